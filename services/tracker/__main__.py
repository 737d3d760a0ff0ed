from services.tracker.main import main

main()
