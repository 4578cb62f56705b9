import ArgumentParser
import Foundation
import Lathe

struct ConvertAdapter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert-adapter",
        abstract: "Convert a LoRA adapter between PEFT, mlx-lm and llama.cpp's GGUF adapter format.",
        discussion: """
        --adapter reads a PEFT folder (adapter_config.json + adapter_model.safetensors), an mlx-lm folder \
        (adapter_config.json + adapters.safetensors, as mlx_lm.lora writes it: lora_a [in, r], lora_b [r, out], \
        scale) or a llama.cpp .gguf adapter. A .gguf output is a llama.cpp LoRA adapter (llama-cli --lora FILE): \
        tensors named as the base GGUF's with .lora_a/.lora_b, Llama's q/k lora_b rows in llama.cpp's RoPE order, \
        adapter.lora.alpha so that llama.cpp's alpha/r is the adapter's scaling (DoRA cannot be written: fuse it). \
        Any other output is a PEFT folder. --model is the base the adapter was trained on (a GGUF file or a Hugging \
        Face folder): names, shapes and the q/k row order come from it.
        Examples:
          lathe convert-adapter --model ~/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf --adapter my-adapter --output my-adapter.gguf
          lathe convert-adapter --model smollm2-hf --adapter mlx-adapters --output peft-adapter
        """)

    @Option(help: "The base model the adapter was trained on: a GGUF file or a Hugging Face folder.") var model: String
    @Option(help: "The adapter: a PEFT or mlx-lm folder, or a llama.cpp .gguf adapter.") var adapter: String
    @Option(help: "A .gguf file (llama.cpp LoRA adapter) or a folder (PEFT).") var output: String
    @Option(help: "Tensor type of a .gguf output: f32, f16 or bf16.") var type: String = "f32"

    var toGGUF: Bool { output.lowercased().hasSuffix(".gguf") }

    func validate() throws {
        guard ["f32", "f16", "bf16"].contains(type.lowercased()) else { throw ValidationError("--type is f32, f16 or bf16, not '\(type)'") }
        if !toGGUF, type.lowercased() != "f32" { throw ValidationError("--type applies to a .gguf output; a PEFT folder keeps float32") }
    }

    func run() throws {
        guard FileManager.default.fileExists(atPath: model) else { throw CLIError("\(model): no such file or folder") }
        let url = URL(fileURLWithPath: output)
        let ggmlType: GGMLType = switch type.lowercased() { case "f16": .f16; case "bf16": .bf16; default: .f32 }
        let summary: AdapterConversion.Summary
        do {
            summary = try AdapterConversion.convert(base: model, adapter: URL(fileURLWithPath: adapter), to: toGGUF ? .gguf(url, type: ggmlType) : .peft(url))
        } catch let e as LoRAError { throw CLIError("\(e)") } catch let e as ModelFileError { throw CLIError("\(e)") } catch let e as GGUFError {
            throw CLIError("\(e)")
        }
        let c = summary.config
        let method = c.useDoRA ? "DoRA" : "LoRA"
        if toGGUF {
            print("wrote \(output): llama.cpp LoRA adapter (\(summary.tensors.count) \(type.lowercased()) tensors) from the \(summary.format.rawValue) "
                  + "\(method) adapter \(adapter), \(summary.layers.count) layers")
        } else {
            print("wrote \(output): PEFT \(method) adapter (r \(c.rank), lora_alpha \(c.alpha.formatted())) from the \(summary.format.rawValue) adapter \(adapter), "
                  + "\(summary.layers.count) layers")
        }
    }
}
