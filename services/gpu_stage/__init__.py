"""GPU stages (denoise, IVR, LID, STT): one consumer per stage and GPU host."""
