import Foundation
import LatheIO
import LatheNN
import LatheTensor

/// Combines LoRA adapters into one, with the semantics of PEFT 0.21.2's
/// `LoraModel.add_weighted_adapter(adapters, weights, name, combination_type, svd_rank, svd_clamp,
/// density, majority_sign_method)` (peft/tuners/lora/model.py, peft/utils/merge_utils.py).
///
/// For adapter i with weight wᵢ and, at a given module, factors Aᵢ `[rᵢ, in]`, Bᵢ `[out, rᵢ]` and
/// scaling sᵢ (`alpha/r` there, after `rank_pattern`/`alpha_pattern`):
///
/// - `cat` (exact): A = concat over rows of `(Aᵢ·wᵢ)·sᵢ` (in float32, that order), B = concat over
///   columns of Bᵢ, so `B A = Σ wᵢ sᵢ Bᵢ Aᵢ`. The rank is Σ of the adapters' ranks (each adapter's
///   largest, `max(r, rank_pattern)`); a module some adapters lack gets zero rows/columns at the end.
/// - `linear`, `ties`, `dare_linear`, `dare_ties`, `magnitude_prune` (on the factors, an
///   approximation: `B A` has cross terms): with `cᵢ = wᵢ·sᵢ`, A combines the Aᵢ with weights
///   `sign(cᵢ)·sqrt|cᵢ|` and B the Bᵢ with `sqrt|cᵢ|` (weights rounded to float32), each by the
///   merge rule below. All adapters need the same rank.
/// - `svd`, `ties_svd`, `dare_linear_svd`, `dare_ties_svd`, `magnitude_prune_svd`: the full deltas
///   `Δᵢ = (Bᵢ Aᵢ)·sᵢ` (float32) combine by the rule below with weights wᵢ, then the truncated SVD
///   of the result at `rank` (default: the largest adapter rank) gives `B = U_r S_r`, `A = V_rᵀ`
///   (``LowRank``). `clamp` (PEFT's `svd_clamp`, a quantile q): h = the q-quantile (linear
///   interpolation) of all entries of B and A together, then both are clamped to [−h, h].
///
/// Merge rules over tensors tᵢ with weights ωᵢ (PEFT's merge_utils): task arithmetic `Σ ωᵢ tᵢ`;
/// magnitude pruning keeps the `⌊density·n⌋` largest |tᵢ| of each tensor (none pruned at
/// density ≥ 1); DARE keeps each entry with probability `density` and divides by `density`
/// (masks from Lathe's counter-based generator, ``Merger/maskGenerator(seed:tensor:input:)``, so
/// they differ from torch's but are the same at any thread count); TIES elects per entry the sign
/// of `Σ tᵢ` (`total`) or of `Σ sign(tᵢ)` (`frequency`) over the pruned, unweighted tensors, ≥ 0
/// counting as +, and returns `Σ ωᵢ tᵢ` over the tᵢ of that sign divided by how many there are
/// (at least 1) — a count, not a sum of weights as in mergekit.
///
/// The result adapter (as PEFT's) has `r` = the new rank, `lora_alpha = r` (scale 1),
/// empty `rank_pattern`/`alpha_pattern`, the other settings of the first adapter, and
/// `target_modules` the union of the adapters' (their regexes joined by `|` when they are
/// strings). Where Lathe differs from PEFT, on purpose:
/// - `use_rslora` is written false: PEFT copies it from the first adapter, which makes the
///   result's scale `r/sqrt(r)` instead of 1 and multiplies every combined delta by sqrt(r);
/// - a module whose combined factors have a smaller rank than `r` (a `rank_pattern`) is padded
///   with zeros (PEFT stores the smaller tensor under a config that says `r`, which then fails to
///   load); padding changes no product `B A`;
/// - one adapter is combined by the method asked for (PEFT switches to `linear`, ignoring
///   `svd_rank`), so `svd` of one adapter re-factors it at a lower rank;
/// - when the adapters' `layers_to_transform`, `layers_pattern` or `exclude_modules` differ, or
///   their targets mix lists and regexes, `target_modules` lists the exact module paths written
///   (PEFT raises or keeps the first adapter's settings, which may drop modules).
/// DoRA adapters are refused: their magnitude vectors cannot be combined without the base weights.
public enum AdapterArithmetic {
    public enum Method: String, CaseIterable, Sendable {
        case cat, linear, svd, ties
        case tiesSVD = "ties_svd"
        case dareLinear = "dare_linear"
        case dareTies = "dare_ties"
        case dareLinearSVD = "dare_linear_svd"
        case dareTiesSVD = "dare_ties_svd"
        case magnitudePrune = "magnitude_prune"
        case magnitudePruneSVD = "magnitude_prune_svd"

        public var usesSVD: Bool { rawValue.hasSuffix("svd") }
        var pruning: Pruning {
            switch self {
            case .cat, .linear, .svd: .none
            case .ties, .tiesSVD, .magnitudePrune, .magnitudePruneSVD: .magnitude
            case .dareLinear, .dareTies, .dareLinearSVD, .dareTiesSVD: .random
            }
        }
        var electsSign: Bool { [.ties, .tiesSVD, .dareTies, .dareTiesSVD].contains(self) }
        public var needsDensity: Bool { pruning != .none }
    }

    enum Pruning { case none, magnitude, random }

    public enum MajoritySign: String, CaseIterable, Sendable { case total, frequency }

    public struct Options: Sendable {
        public var method: Method
        /// The rank of an SVD method's result (default: the largest of the adapters' ranks).
        public var rank: Int?
        /// The fraction of entries kept by the pruning methods, in [0, 1].
        public var density: Double?
        public var majoritySign: MajoritySign = .total
        /// PEFT's `svd_clamp`: a quantile in (0, 1] of the factors' entries to clamp them to.
        public var clamp: Double?
        /// Seed of the DARE masks.
        public var seed: UInt64 = 0
        /// Combine adapters whose `base_model_name_or_path` differ.
        public var allowDifferentBases = false
        public init(method: Method, rank: Int? = nil, density: Double? = nil) { (self.method, self.rank, self.density) = (method, rank, density) }
    }

    /// An adapter read from a PEFT folder.
    public struct Adapter {
        public var name: String
        public var config: LoRAConfig
        /// Per module path (`model.layers.0.self_attn.q_proj`): A `[r, in]`, B `[out, r]`.
        public var modules: [String: (a: Tensor, b: Tensor)]

        /// Reads `adapter_config.json` and `adapter_model.safetensors` of `folder`.
        public static func read(folder: URL) throws -> Adapter {
            let config = try PEFTAdapter.readConfig(folder: folder)
            let url = folder.appendingPathComponent(PEFTAdapter.weightsFile)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw LoRAError("\(folder.path) has no \(PEFTAdapter.weightsFile) (adapter_model.bin, PyTorch's pickle format, is not read)")
            }
            return try Adapter(name: folder.path, config: config, tensors: try MappedSafeTensors(contentsOf: url))
        }

        public init(name: String, config: LoRAConfig, tensors: some TensorSource) throws {
            if config.useDoRA {
                throw LoRAError("\(name): a DoRA adapter (use_dora); its magnitude vectors depend on the base weights and cannot be combined with other adapters")
            }
            var a: [String: Tensor] = [:], b: [String: Tensor] = [:]
            for t in tensors.tensorNames {
                guard t.hasPrefix(PEFTAdapter.prefix) else { throw LoRAError("\(name): tensor \(t) does not start with \(PEFTAdapter.prefix) (not a PEFT LoRA adapter file)") }
                let rest = String(t.dropFirst(PEFTAdapter.prefix.count))
                if rest.hasSuffix(".lora_A.weight") {
                    a[String(rest.dropLast(".lora_A.weight".count))] = try tensors.float32Tensor(named: t).contiguous()
                } else if rest.hasSuffix(".lora_B.weight") {
                    b[String(rest.dropLast(".lora_B.weight".count))] = try tensors.float32Tensor(named: t).contiguous()
                } else {
                    throw LoRAError("\(name): \(t) is neither lora_A nor lora_B of a linear layer (embedding and DoRA adapters cannot be combined)")
                }
            }
            var modules: [String: (a: Tensor, b: Tensor)] = [:]
            for (path, at) in a {
                guard let bt = b[path] else { throw LoRAError("\(name): \(path) has lora_A but no lora_B") }
                guard at.shape.count == 2, bt.shape.count == 2, at.shape[0] == bt.shape[1] else {
                    throw LoRAError("\(name): \(path): lora_A \(at.shape) and lora_B \(bt.shape) do not make [out, r] x [r, in]")
                }
                guard at.scalars.allSatisfy(\.isFinite), bt.scalars.allSatisfy(\.isFinite) else { throw LoRAError("\(name): \(path) holds NaN or infinite values") }
                modules[path] = (at, bt)
            }
            if let path = b.keys.first(where: { a[$0] == nil }) { throw LoRAError("\(name): \(path) has lora_B but no lora_A") }
            guard !modules.isEmpty else { throw LoRAError("\(name): the adapter has no LoRA tensors") }
            (self.name, self.config, self.modules) = (name, config, modules)
        }

        /// PEFT's `scaling[adapter]` at `path`, in double precision: alpha/r (alpha/sqrt(r) with rsLoRA).
        func scaling(_ path: String) -> Double {
            let r = Double(config.rank(for: path)), alpha = config.alpha(for: path)
            return config.useRSLoRA ? alpha / r.squareRoot() : alpha / r
        }

        /// The rank PEFT allocates for the adapter: `max(r, rank_pattern values)`.
        var largestRank: Int { ([config.rank] + config.rankPattern.map(\.value)).max()! }
    }

    /// The combined adapter: its config and tensors under PEFT's names.
    public struct Result {
        public var config: LoRAConfig
        public var tensors: [String: Tensor]
        public var modules: Int { tensors.count / 2 }
    }

    /// Reads the PEFT folders and combines them; see ``combine(_:options:)``.
    public static func combine(folders: [(folder: URL, weight: Double)], options: Options) throws -> Result {
        var adapters: [(Adapter, Double)] = []
        for (folder, weight) in folders {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw LoRAError("\(folder.path): no such adapter folder")
            }
            adapters.append((try Adapter.read(folder: folder), weight))
        }
        return try combine(adapters, options: options)
    }

    /// Combines `adapters` (each with its weight) as `options.method` says.
    public static func combine(_ adapters: [(adapter: Adapter, weight: Double)], options: Options) throws -> Result {
        let method = options.method
        guard !adapters.isEmpty else { throw LoRAError("no adapters to combine") }
        for (a, w) in adapters where !w.isFinite || !Float(w).isFinite { throw LoRAError("\(a.name): the weight \(w) is not a finite number") }
        if method.needsDensity {
            guard let d = options.density else { throw LoRAError("\(method.rawValue) needs a density (the fraction of entries kept, in [0, 1])") }
            guard d.isFinite, (0...1).contains(d) else { throw LoRAError("density must be in [0, 1], got \(d)") }
        } else if options.density != nil {
            throw LoRAError("\(method.rawValue) takes no density (it is for ties, dare_* and magnitude_prune*)")
        }
        if let r = options.rank {
            guard method.usesSVD else {
                throw LoRAError("\(method.rawValue) takes no rank (cat's is the sum of the adapters' ranks, the methods on the factors keep the adapters' own); only the svd methods take one")
            }
            guard r >= 1, r <= 1 << 16 else { throw LoRAError("the rank must be in 1...65536, got \(r)") }
        }
        if let q = options.clamp {
            guard method.usesSVD else { throw LoRAError("clamp (svd_clamp) is for the svd methods") }
            guard q.isFinite, q > 0, q <= 1 else { throw LoRAError("clamp must be a quantile in (0, 1], got \(q)") }
        }
        if !options.allowDifferentBases {
            let bases = adapters.compactMap { e in e.adapter.config.baseModel.map { (e.adapter.name, $0) } }
            if let first = bases.first, let other = bases.first(where: { $0.1 != first.1 }) {
                throw LoRAError("the adapters were trained on different base models: \(first.0) on '\(first.1)', \(other.0) on '\(other.1)' (allow it if these name the same model)")
            }
        }
        // Every module's shape must agree among the adapters that adapt it.
        var shapes: [String: (out: Int, in: Int, from: String)] = [:]
        for (a, _) in adapters {
            for (path, m) in a.modules {
                let s = (out: m.b.shape[0], in: m.a.shape[1])
                if let seen = shapes[path], seen.out != s.out || seen.in != s.in {
                    throw LoRAError("\(path): \(seen.from) adapts a [\(seen.out), \(seen.in)] weight but \(a.name) a [\(s.out), \(s.in)] one; combine adapters of one base model")
                }
                if shapes[path] == nil { shapes[path] = (s.out, s.in, a.name) }
            }
        }
        let ranks = adapters.map(\.adapter.largestRank)
        let newRank: Int
        switch method {
        case .cat: newRank = ranks.reduce(0, +)
        case .linear, .ties, .dareLinear, .dareTies, .magnitudePrune:
            guard Set(ranks).count == 1 else {
                throw LoRAError("\(method.rawValue) needs adapters of one rank, got " + zip(adapters, ranks).map { "\($0.0.adapter.name): \($0.1)" }.joined(separator: ", ")
                                + " (cat and the svd methods combine any ranks)")
            }
            newRank = ranks[0]
        default: newRank = options.rank ?? ranks.max()!
        }
        guard newRank <= 1 << 16 else { throw LoRAError("the combined rank \(newRank) is above 65536") }

        var tensors: [String: Tensor] = [:]
        for path in shapes.keys.sorted() {
            let (out, inp, _) = shapes[path]!
            let present = adapters.enumerated().compactMap { (i, e) in e.adapter.modules[path].map { (index: i, a: $0.a, b: $0.b, w: e.weight, s: e.adapter.scaling(path)) } }
            var a = [Float](repeating: 0, count: newRank * inp), b = [Float](repeating: 0, count: out * newRank)
            switch method {
            case .cat:
                var offset = 0
                for p in present {
                    let r = p.a.shape[0], av = p.a.scalars, bv = p.b.scalars
                    let w = Float(p.w), s = Float(p.s)
                    for i in 0..<r * inp { a[offset * inp + i] = av[i] * w * s }
                    for o in 0..<out { for j in 0..<r { b[o * newRank + offset + j] = bv[o * r + j] } }
                    offset += r
                }
            case .linear, .ties, .dareLinear, .dareTies, .magnitudePrune:
                let r = present[0].a.shape[0]
                if let odd = present.first(where: { $0.a.shape[0] != r }) {
                    throw LoRAError("\(path): \(adapters[present[0].index].adapter.name) has rank \(r) here but \(adapters[odd.index].adapter.name) \(odd.a.shape[0]); \(method.rawValue) needs equal ranks (use cat or an svd method)")
                }
                let c = present.map { $0.w * $0.s }
                let wa = c.map { Float(($0 >= 0 ? 1 : -1) * abs($0).squareRoot()) }, wb = c.map { Float(abs($0).squareRoot()) }
                let ma = try merge(present.map { $0.a.scalars }, weights: wa, method: method, options: options, tensor: path + ".lora_A", inputs: present.map(\.index))
                let mb = try merge(present.map { $0.b.scalars }, weights: wb, method: method, options: options, tensor: path + ".lora_B", inputs: present.map(\.index))
                for i in 0..<r * inp { a[i] = ma[i] }
                for o in 0..<out { for j in 0..<r { b[o * newRank + j] = mb[o * r + j] } }
            default:
                let deltas = present.map { p in delta(a: p.a, b: p.b, scaling: Float(p.s)) }
                let combined = try merge(deltas, weights: present.map { Float($0.w) }, method: method, options: options, tensor: path, inputs: present.map(\.index))
                let f: LowRankFactors
                do { f = try LowRank.factor(combined.map(Double.init), rows: out, columns: inp, rank: newRank) } catch { throw LoRAError("\(path): \(error)") }
                var fb = f.b.map(Float.init), fa = f.a.map(Float.init)
                if let q = options.clamp {
                    let h = quantile(fb + fa, q)
                    fb = fb.map { min(max($0, -h), h) }
                    fa = fa.map { min(max($0, -h), h) }
                }
                (a, b) = (fa, fb)
            }
            guard a.allSatisfy(\.isFinite), b.allSatisfy(\.isFinite) else { throw LoRAError("\(path): the combined adapter holds NaN or infinite values") }
            tensors[PEFTAdapter.prefix + path + ".lora_A.weight"] = Tensor(a, shape: [newRank, inp])
            tensors[PEFTAdapter.prefix + path + ".lora_B.weight"] = Tensor(b, shape: [out, newRank])
        }
        var config = adapters[0].adapter.config
        config.rank = newRank
        config.alpha = Double(newRank)
        config.rankPattern = []
        config.alphaPattern = []
        config.useRSLoRA = false
        let configs = adapters.map(\.adapter.config)
        let sameFilters = configs.allSatisfy { $0.layers == config.layers && $0.layersPattern == config.layersPattern && $0.excluded == config.excluded }
        var names: [String] = [], regexes: [String] = [], allLinear = 0
        for c in configs {
            switch c.targets {
            case .names(let n): names += n
            case .regex(let r): regexes.append(r)
            case .allLinear: allLinear += 1
            }
        }
        if sameFilters && regexes.isEmpty && allLinear == 0 {
            config.targets = .names(Array(Set(names)).sorted())
        } else if sameFilters && names.isEmpty && allLinear == 0 {
            config.targets = .regex(regexes.map { "(\($0))" }.joined(separator: "|"))
        } else if sameFilters && allLinear == configs.count {
            config.targets = .allLinear
        } else {
            config.targets = .names(shapes.keys.sorted())
            (config.layers, config.layersPattern, config.excluded) = (nil, nil, nil)
        }
        return Result(config: config, tensors: tensors)
    }

    /// `(B A)·s` in float32 (`[out, r] x [r, in]`).
    static func delta(a: Tensor, b: Tensor, scaling: Float) -> [Float] {
        let r = a.shape[0], inp = a.shape[1], out = b.shape[0]
        let av = a.scalars, bv = b.scalars
        var d = [Float](repeating: 0, count: out * inp)
        for o in 0..<out {
            for k in 0..<r {
                let bk = bv[o * r + k]
                if bk == 0 { continue }
                for i in 0..<inp { d[o * inp + i] += bk * av[k * inp + i] }
            }
            for i in 0..<inp { d[o * inp + i] *= scaling }
        }
        return d
    }

    /// PEFT's merge rule of `method` over `tensors` (same length) with `weights`; `inputs` are the
    /// adapters' indices (for the DARE masks).
    static func merge(_ tensors: [[Float]], weights: [Float], method: Method, options: Options, tensor: String, inputs: [Int]) throws -> [Float] {
        let n = tensors[0].count
        var t = tensors
        let density = options.density ?? 1
        if density < 1 {
            for k in t.indices {
                try t[k].withUnsafeMutableBufferPointer { p in
                    guard let x = p.baseAddress, n > 0 else { return }
                    switch method.pruning {
                    case .none: break
                    case .magnitude:
                        let keep = Int(density * Double(n))
                        Sparsify.keepRanks(x, n, from: n - keep, to: n)
                    case .random:
                        try Sparsify.apply(.random, delta: x, count: n, rowLength: n, density: density, gamma: 0, epsilon: 0, rescale: .inverseDensity,
                                           generator: Merger.maskGenerator(seed: options.seed, tensor: tensor, input: inputs[k]), tensor: tensor)
                    }
                }
            }
        }
        var out = [Float](repeating: 0, count: n)
        if method.electsSign {
            for i in 0..<n {
                var s: Float = 0
                for k in t.indices {
                    let x = t[k][i]
                    s += options.majoritySign == .total ? x : (x > 0 ? 1 : (x < 0 ? -1 : 0))
                }
                let majority: Float = s >= 0 ? 1 : -1
                var sum: Float = 0, count: Float = 0
                for k in t.indices {
                    let x = t[k][i]
                    if (x > 0 && majority > 0) || (x < 0 && majority < 0) { sum += x * weights[k]; count += 1 }
                }
                out[i] = sum / max(count, 1)
            }
        } else {
            for k in t.indices {
                let w = weights[k]
                for i in 0..<n { out[i] += t[k][i] * w }
            }
        }
        return out
    }

    /// torch.quantile's default (linear interpolation between the two nearest ranks).
    static func quantile(_ values: [Float], _ q: Double) -> Float {
        guard !values.isEmpty else { return 0 }
        let v = values.sorted()
        let position = q * Double(v.count - 1)
        let lo = Int(position.rounded(.down)), hi = min(lo + 1, v.count - 1)
        let frac = Float(position - Double(lo))
        return v[lo] + frac * (v[hi] - v[lo])
    }

    /// Writes `result` as a PEFT adapter folder (created if needed; both files replaced atomically).
    public static func write(_ result: Result, to folder: URL) throws {
        try writeAdapter(config: result.config, tensors: result.tensors, to: folder)
    }

    static func writeAdapter(config: LoRAConfig, tensors: [String: Tensor], to folder: URL) throws {
        guard !tensors.isEmpty else { throw LoRAError("no adapter tensors to write") }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: folder.appendingPathComponent(PEFTAdapter.weightsFile))
        try AtomicFile.write(JSONWriter.serialize(config.peftJSON()) + "\n", to: folder.appendingPathComponent(PEFTAdapter.configFile))
    }
}
