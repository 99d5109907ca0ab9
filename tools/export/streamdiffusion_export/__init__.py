"""StreamDiffusion export tool: diffusers checkpoints to ONNX model folders for the Node.js runtime.

Run it as ``python3 -m streamdiffusion_export <command>`` with ``PYTHONPATH=tools/export``.
See ``tools/export/README.md`` for the commands and the model folder contract.
"""

__version__ = "0.1.0"

#: Name recorded in model_index.json and golden files.
TOOL_NAME = "streamdiffusion_export"
