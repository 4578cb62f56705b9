/// The BPE merge loop over one word: repeatedly merges the adjacent pair with the best
/// priority (the smallest key; ties go to the leftmost pair), as HF `tokenizers` and llama.cpp do.
///
/// Words of up to `linearLimit` symbols keep each pair's key in an array and scan it (few
/// hash lookups, no heap); longer ones use a binary heap over (key, position) with stale
/// entries skipped when popped, so a 100k-symbol SentencePiece fragment is O(n log n).
struct MergeEngine {
    /// A pair's merge: its priority key (smaller merges first) and the merged symbol.
    typealias Lookup = (Int32, Int32) -> (key: Int64, merged: Int32)?

    static let linearLimit = 48

    private var ids: [Int32] = []
    private var next: [Int32] = []
    private var prev: [Int32] = []
    private var keys: [Int64] = []
    private var merged: [Int32] = []
    private var heap: [(key: Int64, pos: Int32)] = []

    /// Merges `symbols` in place.
    mutating func merge(_ symbols: inout [Int32], lookup: Lookup) {
        let n = symbols.count
        guard n > 1 else { return }
        if n <= MergeEngine.linearLimit {
            mergeLinear(&symbols, lookup)
        } else {
            mergeHeap(&symbols, lookup)
        }
    }

    private mutating func mergeLinear(_ symbols: inout [Int32], _ lookup: Lookup) {
        let none = Int64.max
        keys.removeAll(keepingCapacity: true)
        merged.removeAll(keepingCapacity: true)
        for i in 0..<(symbols.count - 1) {
            if let m = lookup(symbols[i], symbols[i + 1]) {
                keys.append(m.key)
                merged.append(m.merged)
            } else {
                keys.append(none)
                merged.append(-1)
            }
        }
        // symbols[i] pairs with symbols[i + 1]; keys[i] is that pair's key.
        while true {
            var best = none
            var at = -1
            for i in 0..<keys.count where keys[i] < best {
                best = keys[i]
                at = i
            }
            if at < 0 { break }
            symbols[at] = merged[at]
            symbols.remove(at: at + 1)
            keys.remove(at: at)
            merged.remove(at: at)
            if at > 0 {
                if let m = lookup(symbols[at - 1], symbols[at]) {
                    keys[at - 1] = m.key
                    merged[at - 1] = m.merged
                } else {
                    keys[at - 1] = none
                }
            }
            if at < keys.count {
                if let m = lookup(symbols[at], symbols[at + 1]) {
                    keys[at] = m.key
                    merged[at] = m.merged
                } else {
                    keys[at] = none
                }
            }
        }
    }

    private mutating func mergeHeap(_ symbols: inout [Int32], _ lookup: Lookup) {
        let n = symbols.count
        ids = symbols
        next = (0..<n).map { Int32($0 + 1) }
        next[n - 1] = -1
        prev = (0..<n).map { Int32($0 - 1) }
        heap.removeAll(keepingCapacity: true)
        for i in 0..<(n - 1) {
            if let m = lookup(ids[i], ids[i + 1]) { push((m.key, Int32(i))) }
        }
        while let top = pop() {
            let i = Int(top.pos)
            // Skip entries made stale by earlier merges: the left symbol is gone (-1) or its
            // pair now has another key.
            guard ids[i] >= 0, next[i] >= 0 else { continue }
            let j = Int(next[i])
            guard let m = lookup(ids[i], ids[j]), m.key == top.key else { continue }
            ids[i] = m.merged
            ids[j] = -1
            next[i] = next[j]
            if next[j] >= 0 { prev[Int(next[j])] = Int32(i) }
            if prev[i] >= 0, let l = lookup(ids[Int(prev[i])], ids[i]) { push((l.key, prev[i])) }
            if next[i] >= 0, let r = lookup(ids[i], ids[Int(next[i])]) { push((r.key, Int32(i))) }
        }
        symbols.removeAll(keepingCapacity: true)
        var i = 0
        while i >= 0 {
            symbols.append(ids[i])
            i = Int(next[i])
        }
    }

    @inline(__always) private static func less(_ a: (key: Int64, pos: Int32), _ b: (key: Int64, pos: Int32)) -> Bool {
        a.key < b.key || (a.key == b.key && a.pos < b.pos)
    }

    private mutating func push(_ e: (key: Int64, pos: Int32)) {
        heap.append(e)
        var c = heap.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            guard MergeEngine.less(heap[c], heap[p]) else { break }
            heap.swapAt(c, p)
            c = p
        }
    }

    private mutating func pop() -> (key: Int64, pos: Int32)? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1, r = l + 1
                var m = p
                if l < heap.count, MergeEngine.less(heap[l], heap[m]) { m = l }
                if r < heap.count, MergeEngine.less(heap[r], heap[m]) { m = r }
                if m == p { break }
                heap.swapAt(p, m)
                p = m
            }
        }
        return top
    }
}
