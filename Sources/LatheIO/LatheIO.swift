// LatheIO: reading and writing model files (safetensors; later GGUF and Hugging Face folders).
// See SafeTensors.swift.
