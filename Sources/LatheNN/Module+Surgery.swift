import LatheTensor

/// A child module that model surgery may replace (``Module/setModule(_:at:)``).
///
/// Declare replaceable children with it, `@Child public var fc: Linear`, and call them through
/// the projected value in `forward`, `$fc(x)`: that runs whatever module is in the slot now,
/// of any type (a quantized layer, a LoRA wrapper, an observer). Reading `fc` gives the module
/// as its declared type, and stops with a message naming the slot if surgery put a module of
/// another type there.
///
/// A wrapper is an ordinary parent: `LoRALinear(base: fc)` holds the original layer as its own
/// child, and the slot holds the wrapper. There are no replacement chains to follow.
///
/// `key` overrides the child's state-dict name, which is otherwise the property's name in
/// snake case: `@Child(key: "LayerNorm") var norm: LayerNorm` (BERT), `@Child(key: "lora_A")
/// var loraA: Linear` (PEFT).
@propertyWrapper
public final class Child<Value>: AnyChildSlot {
    /// The module in the slot.
    public private(set) var module: Module?
    /// The state-dict name, when it is not the property's.
    public let key: String?

    public init(wrappedValue: Value, key: String? = nil) {
        module = Child.asModule(wrappedValue)
        self.key = key
    }

    /// An empty slot named `key`, filled by the first assignment (in the module's `init`, after
    /// `super.init()`).
    public init(key: String) {
        module = nil
        self.key = key
    }

    /// The module in the slot as the declared type.
    public var wrappedValue: Value {
        get {
            if let v = module as? Value { return v }
            if module == nil, let none = Optional<Module>.none as? Value { return none }
            preconditionFailure("the slot declared as \(Value.self) now holds a \(module.map { "\(type(of: $0))" } ?? "nil") (model surgery); "
                                + "call it through the projected value ($name(x)) or reach it with module(at:)")
        }
        set { module = Child.asModule(newValue) }
    }

    /// The slot itself: call it to run whatever module it holds.
    public var projectedValue: Child<Value> { self }

    /// Runs the module in the slot (the identity when an optional slot is empty).
    public func callAsFunction(_ x: Tensor) -> Tensor { module.map { $0(x) } ?? x }

    public var declaredType: Any.Type { Value.self }

    public func place(_ new: Module) { module = new }

    private static func asModule(_ value: Value) -> Module? {
        if let m = value as? Module { return m }
        if let optional = value as? Module? { return optional }
        preconditionFailure("@Child holds modules; \(Value.self) is not a Module type")
    }
}

/// What ``Module`` sees of a ``Child`` slot, whatever its declared type.
public protocol AnyChildSlot: AnyObject {
    var module: Module? { get }
    var key: String? { get }
    var declaredType: Any.Type { get }
    func place(_ new: Module)
}

/// A module tree that cannot be changed as asked.
public struct ModuleSurgeryError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let message: String
    public init(path: String, message: String) { (self.path, self.message) = (path, message) }
    public var description: String { "cannot replace the module at '\(path)': \(message)" }
}

extension Module {
    /// The module at a dotted path ("" is this module), as ``namedModules`` names it.
    public func module(at path: String) -> Module? {
        namedModules.first { $0.0 == path }?.1
    }

    /// Puts `module` at `path` in this tree (model surgery): the slot of the parent that holds
    /// the old module now holds `module`, which runs in its place and shows in ``namedModules``,
    /// the parameters and the state dict under that path. To wrap a layer, build the wrapper
    /// around the old module and put the wrapper there. The parent must hold the child in a
    /// ``Child`` slot (or be a ``Sequential``). A typed slot's declared type is not enforced:
    /// reading it as that type afterwards stops with a message; `$slot(x)` runs any module.
    public func setModule(_ module: Module, at path: String) throws(ModuleSurgeryError) {
        guard !path.isEmpty else { throw ModuleSurgeryError(path: path, message: "the root cannot be replaced; use the new module instead") }
        // Down the tree along the path (children whose name begins what is left of it, in
        // namedModules order), rather than through every module of the tree: wrapping each of a
        // model's hundreds of layers stays linear in its size.
        func place(under parent: Module, rest: Substring) throws(ModuleSurgeryError) -> Bool {
            for (name, old) in parent.namedChildren {
                if rest == name {
                    if module === old { return true }
                    if module.namedModules.contains(where: { $0.1 === parent }) {
                        throw ModuleSurgeryError(path: path, message: "the new module contains the module that would hold it (a cycle)")
                    }
                    try parent.replaceChild(named: name, with: module, path: path)
                    return true
                }
                if rest.hasPrefix(name + "."), try place(under: old, rest: rest.dropFirst(name.count + 1)) { return true }
            }
            return false
        }
        if try place(under: self, rest: Substring(path)) { return }
        throw ModuleSurgeryError(path: path, message: "there is no module there (the paths are those of namedModules)")
    }

    /// The default of ``replaceChild(named:with:path:)``: the ``Child`` slot of that name.
    func replaceSlot(named name: String, with module: Module, path: String) throws(ModuleSurgeryError) {
        var mirror: Mirror? = Mirror(reflecting: self)
        while let m = mirror, m.subjectType != Module.self {
            for child in m.children {
                let slot = Module.object(child.value) as? AnyChildSlot
                guard let label = child.label, (slot?.key ?? Module.stateName(label)) == name else { continue }
                guard let slot else {
                    throw ModuleSurgeryError(path: path, message: "\(type(of: self)).\(label) is a plain stored property; "
                                             + "declare it @Child var to let surgery replace it")
                }
                slot.place(module)
                return
            }
            mirror = m.superclassMirror
        }
        throw ModuleSurgeryError(path: path, message: "\(type(of: self)) has no child slot '\(name)' it can replace")
    }

    /// Every module of the tree by path, to put back with ``restore(_:)`` after surgery.
    public func snapshot() -> [(String, Module)] { namedModules }

    /// Puts back the modules of a ``snapshot()`` wherever surgery changed them since (parents
    /// first, so a restored parent's own children are checked after it).
    public func restore(_ snapshot: [(String, Module)]) {
        for (path, m) in snapshot where !path.isEmpty {
            if let now = module(at: path), now !== m { try? setModule(m, at: path) }
        }
    }
}
