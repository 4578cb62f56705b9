// LatheIO: reading and writing model files (safetensors; GGUF reading; later Hugging Face folders).
// See SafeTensors.swift and GGUFFile.swift.
