import LatheTensor

/// A trainable tensor owned by a module (PyTorch's `nn.Parameter`).
///
/// The value is a leaf that requires grad while ``requiresGrad`` is true; after
/// `backward()` its gradient is in ``grad``. Optimisers replace ``value`` in place.
public final class Parameter {
    /// The current value: always a fresh leaf (assigning a computed tensor cuts its graph
    /// and drops any accumulated gradient).
    public var value: Tensor {
        didSet { value = value.detached().requiringGrad(requiresGrad) }
    }
    /// Frozen parameters (false) get no gradient and are skipped by optimisers.
    public var requiresGrad: Bool { didSet { value = value.detached().requiringGrad(requiresGrad) } }

    public init(_ value: Tensor, requiresGrad: Bool = true) {
        self.requiresGrad = requiresGrad
        self.value = value.detached().requiringGrad(requiresGrad)
    }

    /// The gradient accumulated since the last ``zeroGrad()``.
    public var grad: Tensor? {
        get { value.grad }
        set { value.grad = newValue }
    }

    public func zeroGrad() { value.grad = nil }
}

/// Non-trained state owned by a module (running statistics; PyTorch's buffers).
public final class Buffer {
    public var value: Tensor
    /// Whether the buffer is part of the state dict.
    public let persistent: Bool
    public init(_ value: Tensor, persistent: Bool = true) {
        self.value = value.detached()
        self.persistent = persistent
    }
}

/// The base of all layers and models (PyTorch's `nn.Module`).
///
/// Parameters, buffers and child modules are found from stored properties by reflection,
/// named like PyTorch `state_dict` keys: a property `runningMean` is `running_mean`, an array
/// of modules `blocks` gives `blocks.0`, `blocks.1`, ... Override ``namedChildren`` (as
/// ``Sequential`` does) for other naming.
open class Module {
    /// Training mode (dropout active, batch norm uses batch statistics) or evaluation mode.
    public private(set) var isTraining = true

    public init() {}

    /// The layer's computation on one input. Layers with other signatures define their own
    /// `callAsFunction`.
    open func forward(_ x: Tensor) -> Tensor {
        preconditionFailure("\(type(of: self)) does not take a single tensor input")
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { forward(x) }

    // MARK: - Structure

    /// Stored properties of this module (and its superclasses), in declaration order.
    private var reflectedProperties: [(String, Any)] {
        var mirrors: [Mirror] = []
        var m: Mirror? = Mirror(reflecting: self)
        // Module's own stored properties (the mode) are not state or children.
        while let current = m, current.subjectType != Module.self { mirrors.append(current); m = current.superclassMirror }
        return mirrors.reversed().flatMap { mirror in
            mirror.children.compactMap { child in child.label.map { (Module.stateName($0), child.value) } }
        }
    }

    /// `camelCase` property names as PyTorch's `snake_case` keys; a leading `_` is dropped.
    static func stateName(_ label: String) -> String {
        var out = ""
        for ch in label.drop(while: { $0 == "_" }) {
            if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }

    /// A property's value when it is an object (optionals unwrapped), else nil. Only the types
    /// are inspected first: a dynamic cast of a large array (`[UInt8]` codes, `[Float]` biases)
    /// to a class or protocol type converts it element by element (to an NSArray on Linux).
    static func object(_ value: Any) -> AnyObject? {
        var v = value
        if type(of: v) is AnyOptional.Type {
            guard let inner = (v as! AnyOptional).wrappedValue else { return nil }
            v = inner
        }
        guard type(of: v) is AnyClass else { return nil }
        return v as AnyObject
    }

    /// Direct children with their names.
    open var namedChildren: [(String, Module)] {
        reflectedProperties.flatMap { name, value -> [(String, Module)] in
            if let o = Module.object(value) {
                if let m = o as? Module { return [(name, m)] }
                if let slot = o as? AnyChildSlot { return slot.module.map { [(slot.key ?? name, $0)] } ?? [] }
                return []
            }
            if type(of: value) is ModuleArray.Type {
                return (value as! ModuleArray).moduleElements.enumerated().map { ("\(name).\($0.offset)", $0.element) }
            }
            return []
        }
    }

    /// Replaces the direct child `name` (a name of ``namedChildren``) for ``setModule(_:at:)``.
    /// The default finds the ``Child`` slot of that name; containers that keep their children
    /// otherwise (``Sequential``) override it.
    open func replaceChild(named name: String, with module: Module, path: String) throws(ModuleSurgeryError) {
        try replaceSlot(named: name, with: module, path: path)
    }

    /// This module's own parameters (not its children's).
    open var ownParameters: [(String, Parameter)] {
        reflectedProperties.compactMap { name, value in (Module.object(value) as? Parameter).map { (name, $0) } }
    }

    /// This module's own buffers.
    open var ownBuffers: [(String, Buffer)] {
        reflectedProperties.compactMap { name, value in (Module.object(value) as? Buffer).map { (name, $0) } }
    }

    /// Every module in the tree with its dotted path ("" for this one), parents first.
    public var namedModules: [(String, Module)] {
        var out: [(String, Module)] = [("", self)]
        for (name, child) in namedChildren {
            out += child.namedModules.map { ($0.0.isEmpty ? name : "\(name).\($0.0)", $0.1) }
        }
        return out
    }

    /// Every parameter with its dotted name, in registration order. A parameter shared by two
    /// modules (a tied embedding and output matrix) is listed once, under its first name, so it
    /// is saved, loaded, counted and stepped once.
    public var namedParameters: [(String, Parameter)] {
        var seen = Set<ObjectIdentifier>()
        return namedModules.flatMap { prefix, m in m.ownParameters.map { (prefix.isEmpty ? $0.0 : "\(prefix).\($0.0)", $0.1) } }
            .filter { seen.insert(ObjectIdentifier($0.1)).inserted }
    }

    /// Every buffer with its dotted name.
    public var namedBuffers: [(String, Buffer)] {
        namedModules.flatMap { prefix, m in m.ownBuffers.map { (prefix.isEmpty ? $0.0 : "\(prefix).\($0.0)", $0.1) } }
    }

    public var parameters: [Parameter] { namedParameters.map(\.1) }

    /// Number of parameter elements (all, or only trainable ones).
    public func parameterCount(trainableOnly: Bool = false) -> Int {
        parameters.filter { !trainableOnly || $0.requiresGrad }.reduce(0) { $0 + $1.value.count }
    }

    // MARK: - Modes

    /// Switches this module and its children to training (true) or evaluation mode.
    public func train(_ on: Bool = true) {
        for (_, m) in namedModules { m.isTraining = on }
    }

    /// Evaluation mode (`train(false)`).
    public func eval() { train(false) }

    /// Freezes (or unfreezes) every parameter.
    public func freeze(_ frozen: Bool = true) {
        for p in parameters { p.requiresGrad = !frozen }
    }

    public func zeroGrad() { for p in parameters { p.zeroGrad() } }

    // MARK: - State dict

    /// Parameters and persistent buffers by PyTorch `state_dict` key.
    public func stateDict() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, p) in namedParameters { out[k] = p.value.detached() }
        for (k, b) in namedBuffers where b.persistent { out[k] = b.value }
        return out
    }

    /// Keys in registration order (parameters first within each module, as listed).
    public var stateKeys: [String] {
        namedParameters.map(\.0) + namedBuffers.filter { $0.1.persistent }.map(\.0)
    }

    /// Loads values by key. With `strict`, missing and unexpected keys are errors; shapes
    /// must match always. Values are converted to the slot's dtype (fp16 weights load as fp32).
    public func loadStateDict(_ state: [String: Tensor], strict: Bool = true) throws(StateDictError) {
        let params = Dictionary(uniqueKeysWithValues: namedParameters)
        let buffers = Dictionary(uniqueKeysWithValues: namedBuffers.filter { $0.1.persistent })
        if strict {
            let known = Set(params.keys).union(buffers.keys)
            let missing = known.subtracting(state.keys).sorted(), unexpected = Set(state.keys).subtracting(known).sorted()
            if !missing.isEmpty || !unexpected.isEmpty { throw .keys(missing: missing, unexpected: unexpected) }
        }
        for (k, v) in state {
            if let p = params[k] {
                guard v.shape == p.value.shape else { throw .shape(key: k, expected: p.value.shape, found: v.shape) }
                p.value = v.to(p.value.dtype).contiguous()
            } else if let b = buffers[k] {
                guard v.shape == b.value.shape else { throw .shape(key: k, expected: b.value.shape, found: v.shape) }
                b.value = v.to(b.value.dtype).contiguous()
            }
        }
    }
}

/// A state dict that does not fit a module.
public enum StateDictError: Error, CustomStringConvertible, Equatable {
    case keys(missing: [String], unexpected: [String])
    case shape(key: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case let .keys(missing, unexpected):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing keys \(missing.prefix(8).joined(separator: ", "))\(missing.count > 8 ? " and \(missing.count - 8) more" : "")") }
            if !unexpected.isEmpty { parts.append("unexpected keys \(unexpected.prefix(8).joined(separator: ", "))\(unexpected.count > 8 ? " and \(unexpected.count - 8) more" : "")") }
            return "state dict does not match the model: " + parts.joined(separator: "; ") + " (is it the same architecture and configuration?)"
        case let .shape(key, expected, found):
            return "state dict key \(key) has shape \(found) but the model expects \(expected) (check the model configuration)"
        }
    }
}

/// Arrays of modules, found among a module's properties without casting other arrays.
protocol ModuleArray {
    var moduleElements: [Module] { get }
}

extension Array: ModuleArray where Element: Module {
    var moduleElements: [Module] { self }
}

/// Optionals, seen through their type (``Module/object(_:)``).
protocol AnyOptional {
    var wrappedValue: Any? { get }
}

extension Optional: AnyOptional {
    var wrappedValue: Any? { self.map { $0 as Any } }
}
