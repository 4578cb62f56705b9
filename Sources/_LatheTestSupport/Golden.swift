import LatheTensor
import XCTest

/// Runs golden cases through `table` (op name to Lathe call on the case's inputs, leaves
/// where they require grad) and checks outputs and input gradients against PyTorch's.
/// Every case's op must be in the table.
public func checkGoldenCases(_ cases: [OpCase], table: [String: (OpCase, [Tensor]) -> [Tensor]],
                             file: StaticString = #filePath, line: UInt = #line) {
    var missing = Set<String>()
    for c in cases {
        guard let f = table[c.op] else { missing.insert(c.op); continue }
        let inputs = zip(c.inputs, c.requiresGrad).map { $1 ? $0.requiringGrad() : $0 }
        let outputs = f(c, inputs)
        XCTAssertEqual(outputs.count, c.outputs.count, "\(c.name): output count", file: file, line: line)
        for (k, (o, e)) in zip(outputs, c.outputs).enumerated() {
            if e.dtype == .float32 {
                assertClose(o, e, rtol: 1e-5, atol: 2e-6, "\(c.name) output \(k)", file: file, line: line)
            } else {
                XCTAssertEqual(o.shape, e.shape, "\(c.name) output \(k) shape", file: file, line: line)
                XCTAssertEqual(o.intScalars, e.intScalars, "\(c.name) output \(k)", file: file, line: line)
            }
        }
        if let bits = c.bits {
            let dtype: DType = c.op == "to_float16" ? .float16 : .bfloat16
            XCTAssertEqual(c.inputs[0].to(dtype).bitPatterns16.map { Int($0) }, bits, "\(c.name) bits", file: file, line: line)
        }
        guard c.requiresGrad.contains(true) else { continue }
        // Backward: one output with its seed directly, several through a weighted sum.
        let pairs = zip(outputs, c.gradOutputs).compactMap { o, g in g.map { (o, $0) } }
        if pairs.count == 1 {
            pairs[0].0.backward(pairs[0].1)
        } else {
            pairs.map { ($0.0 * $0.1).sum() }.reduce(Tensor(0), +).backward()
        }
        for (k, expected) in c.grads.enumerated() {
            guard let expected, c.requiresGrad[k] else { continue }
            guard let g = inputs[k].grad else {
                XCTFail("\(c.name): input \(k) got no gradient", file: file, line: line)
                continue
            }
            assertClose(g, expected, rtol: 1e-4, atol: 1e-5, "\(c.name) grad of input \(k)", file: file, line: line)
        }
    }
    XCTAssertEqual(missing, [], "ops in the fixture with no Lathe mapping", file: file, line: line)
}
