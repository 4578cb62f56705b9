import Foundation
import LatheIO
import LatheTensor

extension Module {
    /// Writes the state dict (PyTorch `state_dict` keys) as a safetensors file, atomically.
    /// Python reads it with `safetensors.torch.load_file` into the equivalent PyTorch model.
    public func save(to url: URL, metadata: [String: String] = [:]) throws {
        try SafeTensors.write(stateDict(), metadata: metadata.merging(["format": "pt"]) { a, _ in a }, to: url)
    }

    /// Loads a safetensors state dict (Lathe's or one written by PyTorch). With `strict`,
    /// missing and unexpected keys are errors; shapes must always match.
    public func load(contentsOf url: URL, strict: Bool = true) throws {
        try loadStateDict(SafeTensors.read(contentsOf: url).tensors, strict: strict)
    }
}
