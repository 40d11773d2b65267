import Foundation
import TopiaryAutodiff
import TopiaryCore

/// One tensor axis that shrinks with a group, and which of its indices belong to each unit.
public struct GroupMember: Codable, Sendable, Equatable {
    /// Parameter name (Hugging Face style, e.g. `model.layers.3.self_attn.q_proj.weight`).
    public var tensor: String
    /// Axis of the tensor (row-major: 0 = rows / output features of a linear weight).
    public var axis: Int
    /// Indices of this axis per unit.
    public var channelsPerUnit: Int
    /// Explicit indices per unit; nil when unit `u` is the range `[u·c, (u+1)·c)`.
    public var indices: [[Int]]?

    enum CodingKeys: String, CodingKey {
        case tensor, axis, indices
        case channelsPerUnit = "channels_per_unit"
    }

    /// The indices of `unit` along ``axis``.
    public func channels(ofUnit unit: Int) -> [Int] {
        if let indices { return indices[unit] }
        return Array((unit * channelsPerUnit)..<((unit + 1) * channelsPerUnit))
    }
}

/// A set of tensor slices that must be removed together, made of independently removable units.
public struct PruningGroup: Codable, Sendable, Equatable {
    public var id: Int
    /// `attention` (whole KV-head groups), `mlp` (feed-forward channels), `hidden` (the residual width), `other`.
    public var kind: String
    /// The decoder layer all members belong to, when they do.
    public var layer: Int?
    public var units: Int
    public var members: [GroupMember]
    /// Operations whose coupling rules shaped this group (for reports and the .dot file).
    public var operations: [String]

    /// Number of parameters one unit removes.
    public func parametersPerUnit(shapes: [String: [Int]]) -> Int {
        members.reduce(0) { total, m in
            guard let shape = shapes[m.tensor] else { return total }
            let other = shape.enumerated().filter { $0.offset != m.axis }.reduce(1) { $0 * $1.element }
            return total + m.channelsPerUnit * other
        }
    }
}

/// The coupled structures of a model, discovered from a trace of its forward pass.
public struct DependencyGraph: Codable, Sendable {
    public var model: String
    public var groups: [PruningGroup]
    /// Parameter axes that can never shrink (vocabulary, model inputs/outputs), for information.
    public var fixedAxes: [String]

    enum CodingKeys: String, CodingKey {
        case model, groups
        case fixedAxes = "fixed_axes"
    }
}

/// Errors of graph discovery.
public enum GraphError: Error, LocalizedError, Equatable {
    case emptyTrace
    case unsupported(op: String, reason: String)

    public var errorDescription: String? {
        switch self {
        case .emptyTrace: return "dependency graph: the trace recorded no operations"
        case let .unsupported(op, reason): return "dependency graph: cannot propagate through \(op): \(reason)"
        }
    }
}

/// Builds a ``DependencyGraph`` from recorded operations.
///
/// Every traced value's last axis and every parameter axis is a *channel space*. Each op kind has one
/// propagation rule saying which channels of its inputs and output must be removed together (a linear
/// layer ties its input features to the weight's columns and its output features to the weight's rows;
/// element-wise ops tie their operands; attention ties each query head to its KV head; residual adds tie
/// the hidden width across layers …). Channels are merged with a union–find; each resulting class that
/// touches parameters is one removable *unit*, and units with the same footprint form a *group*.
public struct DependencyGraphBuilder {
    public init() {}

    public func build(records: [OpRecord], outputs: [Int], modelName: String = "model") throws -> DependencyGraph {
        guard !records.isEmpty else { throw GraphError.emptyTrace }
        var state = State()
        // 1. Channel spaces: parameter axes (shared by every use of the parameter) and each value's last axis.
        var nodeSpace = [Int](repeating: -1, count: records.count)
        for (id, r) in records.enumerated() {
            switch r.kind {
            case .parameter:
                guard let p = r.parameter else { continue }
                for axis in 0..<p.shape.count { _ = state.paramSpace(p.name, axis: axis, size: p.shape[axis]) }
                nodeSpace[id] = state.paramSpace(p.name, axis: p.shape.count - 1, size: p.shape.last ?? 1)
            case .input:
                continue  // token ids and targets carry no channels
            default:
                nodeSpace[id] = state.newSpace(size: r.outputShape.last ?? 1)
            }
        }
        // 2. Propagation rules.
        for (id, r) in records.enumerated() {
            let y = nodeSpace[id]
            let ins = r.inputs.map { $0 >= 0 ? nodeSpace[$0] : -1 }
            let op = r.kind.rawValue
            switch r.kind {
            case .input, .parameter:
                continue
            case .linear:
                guard let w = r.inputs.count == 2 ? records[r.inputs[1]].parameter : nil else {
                    state.fix(y); ins.forEach { state.fix($0) }  // a computed weight: nothing can shrink through it
                    continue
                }
                state.identity(ins[0], state.paramSpace(w.name, axis: 1), op)
                state.identity(y, state.paramSpace(w.name, axis: 0), op)
            case .embedding:
                guard let table = records[r.inputs[0]].parameter else { state.fix(y); continue }
                state.identity(y, state.paramSpace(table.name, axis: 1), op)
                state.fix(state.paramSpace(table.name, axis: 0))
            case .rmsnorm, .layernorm, .add, .mul, .addBias, .silu, .geluTanh, .geluErf, .scale, .softmax, .dropout:
                for s in ins { state.identity(y, s, op) }
            case .gaussianGate:
                // Element-wise on its input; its per-unit log α is a training-time variable, not a model weight.
                state.identity(y, ins[0], op)
                if ins.count > 1 { state.fix(ins[1]) }
            case .groupedRMSNorm:
                // The statistic spans each group of `groupSize` channels and one weight is shared by every
                // group: a group's channels shrink together (a whole head), and the shared weight cannot
                // shrink (its index c is channel c of every group at once).
                state.identity(y, ins[0], op)
                let size = r.attributes["groupSize"] ?? 1, dim = r.attributes["dim"] ?? 0
                for start in stride(from: 0, to: dim, by: max(size, 1)) { state.unite(space: y, range: start..<(start + size), op) }
                if ins.count > 1 { state.fix(ins[1]) }
            case .rope:
                for s in ins { state.identity(y, s, op) }
                let heads = r.attributes["heads"] ?? 1, hd = r.attributes["headDim"] ?? 1
                for h in 0..<heads { state.unite(space: y, range: (h * hd)..<((h + 1) * hd), op) }
            case .attention:
                let heads = r.attributes["heads"] ?? 1, kvHeads = r.attributes["kvHeads"] ?? 1, hd = r.attributes["headDim"] ?? 1
                guard ins.count == 3, kvHeads > 0, heads % kvHeads == 0 else {
                    throw GraphError.unsupported(op: op, reason: "expected q, k, v with heads divisible by KV heads")
                }
                state.identity(y, ins[0], op)
                let group = heads / kvHeads
                for g in 0..<kvHeads {
                    // A KV head, the query heads that read it, and their outputs shrink together.
                    let anchor = state.element(ins[1], g * hd)
                    state.unite(anchor, space: ins[1], range: (g * hd)..<((g + 1) * hd), op)
                    state.unite(anchor, space: ins[2], range: (g * hd)..<((g + 1) * hd), op)
                    state.unite(anchor, space: ins[0], range: (g * group * hd)..<((g + 1) * group * hd), op)
                }
            case .reshape:
                if records[r.inputs[0]].outputShape.last == r.outputShape.last {
                    state.identity(y, ins[0], op)
                } else {
                    state.fix(y); state.fix(ins[0])
                }
            case .transpose:
                let rank = r.outputShape.count
                if r.attributes["axis0"] != rank - 1 && r.attributes["axis1"] != rank - 1 {
                    state.identity(y, ins[0], op)
                } else {
                    state.fix(y); state.fix(ins[0])
                }
            case .slice:
                let rank = r.outputShape.count, axis = r.attributes["axis"] ?? 0
                if axis != rank - 1 {
                    state.identity(y, ins[0], op)
                } else {
                    state.offset(y, into: ins[0], at: r.attributes["start"] ?? 0, op)
                }
            case .concat:
                let rank = r.outputShape.count, axis = r.attributes["axis"] ?? 0
                if axis != rank - 1 {
                    for s in ins { state.identity(y, s, op) }
                } else {
                    var start = 0
                    for (k, s) in ins.enumerated() {
                        state.offset(s, into: y, at: start, op)
                        start += records[r.inputs[k]].outputShape.last ?? 0
                    }
                }
            case .matmul, .crossEntropy, .distillation, .meanSquaredError, .sum, .weightedSum:
                state.fix(y); ins.forEach { state.fix($0) }
            }
        }
        for o in outputs where o >= 0 { state.fix(nodeSpace[o]) }
        return state.groups(modelName: modelName)
    }
}

/// Union–find over every channel of every space.
struct State {
    var parent: [Int32] = []
    var fixed: [Bool] = []
    var ops: [Set<String>] = []  // per element, filled for roots at the end
    var spaceBase: [Int] = []
    var spaceSize: [Int] = []
    var paramSpaces: [String: Int] = [:]  // "name#axis" → space
    var paramKeys: [(name: String, axis: Int)] = []
    var spaceParam: [Int: Int] = [:]  // space → index into paramKeys
    var touched: [Int: Set<String>] = [:]  // element → op kinds (sparse, on roots after merge)

    mutating func newSpace(size: Int) -> Int {
        spaceBase.append(parent.count)
        spaceSize.append(size)
        let start = Int32(parent.count)
        parent.append(contentsOf: (0..<Int32(size)).map { start + $0 })
        fixed.append(contentsOf: repeatElement(false, count: size))
        return spaceBase.count - 1
    }

    mutating func paramSpace(_ name: String, axis: Int, size: Int = 0) -> Int {
        let key = "\(name)#\(axis)"
        if let s = paramSpaces[key] { return s }
        let s = newSpace(size: size)
        paramSpaces[key] = s
        spaceParam[s] = paramKeys.count
        paramKeys.append((name, axis))
        return s
    }

    func element(_ space: Int, _ c: Int) -> Int { spaceBase[space] + c }

    mutating func find(_ x: Int) -> Int {
        var x = x
        while Int(parent[x]) != x {
            parent[x] = parent[Int(parent[x])]
            x = Int(parent[x])
        }
        return x
    }

    mutating func union(_ a: Int, _ b: Int) {
        let ra = find(a), rb = find(b)
        guard ra != rb else { return }
        let (lo, hi) = ra < rb ? (ra, rb) : (rb, ra)
        parent[hi] = Int32(lo)
        fixed[lo] = fixed[lo] || fixed[hi]
        if let t = touched.removeValue(forKey: hi) { touched[lo, default: []].formUnion(t) }
    }

    mutating func note(_ e: Int, _ op: String) {
        let r = find(e)
        if touched[r]?.contains(op) != true { touched[r, default: []].insert(op) }
    }

    mutating func identity(_ a: Int, _ b: Int, _ op: String) {
        guard a >= 0, b >= 0 else { return }
        let n = min(spaceSize[a], spaceSize[b])
        if spaceSize[a] != spaceSize[b] { fix(a); fix(b) }
        for c in 0..<n {
            union(element(a, c), element(b, c))
            note(element(a, c), op)
        }
    }

    /// Channel `c` of `small` is channel `start + c` of `large`.
    mutating func offset(_ small: Int, into large: Int, at start: Int, _ op: String) {
        guard small >= 0, large >= 0 else { return }
        for c in 0..<spaceSize[small] where start + c < spaceSize[large] {
            union(element(small, c), element(large, start + c))
            note(element(small, c), op)
        }
    }

    mutating func unite(space: Int, range: Range<Int>, _ op: String) {
        guard space >= 0, let first = range.first else { return }
        unite(element(space, first), space: space, range: range, op)
    }

    mutating func unite(_ anchor: Int, space: Int, range: Range<Int>, _ op: String) {
        guard space >= 0 else { return }
        for c in range where c < spaceSize[space] { union(anchor, element(space, c)) }
        note(anchor, op)
    }

    mutating func fix(_ space: Int) {
        guard space >= 0 else { return }
        for c in 0..<spaceSize[space] { fixed[element(space, c)] = true }
        for c in 0..<spaceSize[space] { let r = find(element(space, c)); fixed[r] = true }
    }

    mutating func groups(modelName: String) -> DependencyGraph {
        // Collect, per unit (root), the parameter channels it owns.
        struct Unit { var channels: [Int: [Int]] = [:] }  // param key index → channels
        var units: [Int: Unit] = [:]
        var order: [Int] = []
        for (space, keyIndex) in spaceParam.sorted(by: { $0.key < $1.key }) {
            for c in 0..<spaceSize[space] {
                let r = find(element(space, c))
                if units[r] == nil { units[r] = Unit(); order.append(r) }
                units[r]!.channels[keyIndex, default: []].append(c)
            }
        }
        // Units with the same footprint (members and channel counts) form one group.
        var groupOf: [String: Int] = [:]
        var grouped: [[Int]] = []
        var fixedAxes = Set<String>()
        for r in order {
            let u = units[r]!
            if fixed[r] {
                for k in u.channels.keys { fixedAxes.insert("\(paramKeys[k].name)#\(paramKeys[k].axis)") }
                continue
            }
            let signature = u.channels.keys.sorted().map { "\($0):\(u.channels[$0]!.count)" }.joined(separator: ",")
            if let g = groupOf[signature] {
                grouped[g].append(r)
            } else {
                groupOf[signature] = grouped.count
                grouped.append([r])
            }
        }
        var result: [PruningGroup] = []
        for unitRoots in grouped {
            let first = units[unitRoots[0]]!
            let keys = first.channels.keys.sorted { (paramKeys[$0].name, paramKeys[$0].axis) < (paramKeys[$1].name, paramKeys[$1].axis) }
            // Order units by their first channel in the first member.
            let sortedRoots = unitRoots.sorted { units[$0]!.channels[keys[0]]![0] < units[$1]!.channels[keys[0]]![0] }
            var members: [GroupMember] = []
            for k in keys {
                let per = sortedRoots.map { units[$0]!.channels[k]!.sorted() }
                let c = per[0].count
                let contiguous = per.enumerated().allSatisfy { u, ch in ch == Array((u * c)..<((u + 1) * c)) }
                members.append(
                    GroupMember(
                        tensor: paramKeys[k].name, axis: paramKeys[k].axis, channelsPerUnit: c,
                        indices: contiguous ? nil : per))
            }
            var opsSeen = Set<String>()
            for r in sortedRoots { opsSeen.formUnion(touched[r] ?? []) }
            let kind: String
            if opsSeen.contains("attention") {
                kind = "attention"
            } else if opsSeen.contains("embedding") {
                kind = "hidden"
            } else if !opsSeen.isDisjoint(with: ["mul", "silu", "geluTanh", "geluErf"]) {
                kind = "mlp"
            } else {
                kind = "other"
            }
            let layers = Set(members.map { layerIndex(of: $0.tensor) })
            let layer = layers.count == 1 ? layers.first! : nil
            result.append(
                PruningGroup(
                    id: 0, kind: kind, layer: layer, units: sortedRoots.count, members: members,
                    operations: opsSeen.sorted()))
        }
        // Stable order: by layer, then kind (attention before mlp), then hidden/other last.
        let rank = ["attention": 0, "mlp": 1, "other": 2, "hidden": 3]
        result.sort { a, b in
            let la = a.layer ?? Int.max, lb = b.layer ?? Int.max
            if la != lb { return la < lb }
            return (rank[a.kind] ?? 9, a.members[0].tensor) < (rank[b.kind] ?? 9, b.members[0].tensor)
        }
        for i in result.indices { result[i].id = i }
        return DependencyGraph(model: modelName, groups: result, fixedAxes: fixedAxes.sorted())
    }
}

/// `model.layers.12.mlp.up_proj.weight` → 12; nil for tensors outside a layer.
func layerIndex(of name: String) -> Int? {
    let parts = name.split(separator: ".")
    for (i, p) in parts.enumerated() where (p == "layers" || p == "h" || p == "blk") && i + 1 < parts.count {
        if let n = Int(parts[i + 1]) { return n }
    }
    return nil
}
