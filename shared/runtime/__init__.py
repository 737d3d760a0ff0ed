"""The aiokafka consumer runtime shared by gpu_stage, llm_stage and the tracker."""
