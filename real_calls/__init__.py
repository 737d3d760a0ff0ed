"""Real speech to test the pipeline with, made offline: scripted calls, spoken and phoned.

English is spoken by piper-tts with the joe voice, other languages by Debian's espeak-ng;
IVR menus get DTMF key tones. Every call is band-limited to 8 kHz telephone audio with noise
mixed in, and cached under .cache/real-calls. piper and espeak-ng are GPL-3 test-audio tools
(the `test-audio` extra and a Debian package): nothing in model_host imports them.
"""
