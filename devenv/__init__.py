"""wasmdev: a local development environment for WebAssembly (Spin) apps on Kubernetes."""

__version__ = "0.1.0"
