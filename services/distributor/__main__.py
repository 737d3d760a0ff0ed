from services.distributor.main import main

main()
