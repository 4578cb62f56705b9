import Foundation
import LatheIO
import LatheTensor

extension DecoderModel {
    /// Loads a Hugging Face folder: `config.json` and `model.safetensors` (or the shards listed
    /// in `model.safetensors.index.json`).
    public static func load(huggingFaceFolder folder: URL) throws -> DecoderModel {
        let configURL = folder.appendingPathComponent("config.json")
        guard let bytes = try? Data(contentsOf: configURL) else {
            throw ModelFileError(file: configURL.path, message: "cannot read config.json (is \(folder.path) a Hugging Face model folder?)")
        }
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](bytes)) } catch {
            throw ModelFileError(file: configURL.path, message: "not valid JSON: \(error)")
        }
        let config = try DecoderConfig.huggingFace(json, file: configURL.path)
        return try DecoderModel(config: config, weights: try ShardedSafeTensors(try weightFiles(folder)), file: folder.path)
    }

    /// The safetensors files of a folder: the index's shards, or `model.safetensors`.
    static func weightFiles(_ folder: URL) throws -> [URL] {
        let index = folder.appendingPathComponent("model.safetensors.index.json")
        if let bytes = try? Data(contentsOf: index) {
            let json: JSONValue
            do { json = try JSONParser.parse([UInt8](bytes)) } catch { throw ModelFileError(file: index.path, message: "not valid JSON: \(error)") }
            guard let map = json["weight_map"]?.objectMembers else { throw ModelFileError(file: index.path, message: "no weight_map object") }
            var files: [String] = []
            for (key, value) in map {
                guard let name = value.stringValue, !name.contains("/"), !name.hasPrefix(".") else {
                    throw ModelFileError(file: index.path, message: "weight_map[\(key)] is not a file name in the folder")
                }
                if !files.contains(name) { files.append(name) }
            }
            return files.map { folder.appendingPathComponent($0) }
        }
        let single = folder.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: single.path) else {
            throw ModelFileError(file: folder.path, message: "no model.safetensors or model.safetensors.index.json")
        }
        return [single]
    }
}
