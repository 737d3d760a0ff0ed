"""A reference GPU host: the GPU model API (docs/gpu-model-api.md) served by real offline models.

Built from the contract alone, as a GPU team would start: it imports nothing from cofi's
services or shared code. `python -m model_host --hosts 127.0.0.2` serves one port per stage
on each IP; the models and their folders are settings (model_host/settings.py).
"""
