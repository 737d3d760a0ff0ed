from services.gpu_stage.main import main

main()
