from services.llm_stage.main import main

main()
