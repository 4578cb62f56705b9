/// The post-processing stage (HF `processors`): the special tokens put around a sequence
/// when `addSpecialTokens` is set.
public indirect enum PostProcessor: Sendable {
    /// Token ids before and after the sequence (HF `TemplateProcessing`'s `single` template,
    /// `BertProcessing`, `RobertaProcessing`).
    case template(before: [Int], after: [Int])
    /// Adds nothing (HF `ByteLevel`, which only trims offsets).
    case none
    case sequence([PostProcessor])

    /// Every id the post-processor adds.
    var ids: [Int] {
        switch self {
        case .template(let before, let after): before + after
        case .none: []
        case .sequence(let list): list.flatMap(\.ids)
        }
    }

    func apply(_ ids: [Int]) -> [Int] {
        switch self {
        case .template(let before, let after): before + ids + after
        case .none: ids
        case .sequence(let list): list.reduce(ids) { $1.apply($0) }
        }
    }
}
