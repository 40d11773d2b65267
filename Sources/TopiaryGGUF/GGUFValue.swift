import Foundation

/// A GGUF metadata value: one of the format's scalar types, a string, or an array of values.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    case array([GGUFValue])

    /// The value as an `Int` when it is an integer (or a bool) that fits.
    public var int: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return v <= UInt64(Int.max) ? Int(v) : nil
        case let .int64(v): return Int(v)
        default: return nil
        }
    }

    public var double: Double? {
        switch self {
        case let .float32(v): return Double(v)
        case let .float64(v): return v
        default: return int.map(Double.init)
        }
    }

    public var float: Float? { double.map(Float.init) }

    public var string: String? { if case let .string(s) = self { return s }; return nil }

    public var bool: Bool? {
        switch self {
        case let .bool(b): return b
        default: return nil
        }
    }

    public var array: [GGUFValue]? { if case let .array(a) = self { return a }; return nil }
    public var stringArray: [String]? { array.flatMap { a in a.allSatisfy { $0.string != nil } ? a.map { $0.string! } : nil } }
    public var intArray: [Int]? { array.flatMap { a in a.allSatisfy { $0.int != nil } ? a.map { $0.int! } : nil } }
    public var floatArray: [Float]? { array.flatMap { a in a.allSatisfy { $0.float != nil } ? a.map { $0.float! } : nil } }

    /// The GGUF type code of this value.
    public var typeCode: UInt32 {
        switch self {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }
}

extension GGUFValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .string(s): return "\"\(s)\""
        case let .array(a):
            return "[" + a.prefix(4).map(\.description).joined(separator: ", ") + (a.count > 4 ? ", … (\(a.count))" : "") + "]"
        case let .bool(b): return "\(b)"
        default: return int.map(String.init) ?? double.map { "\($0)" } ?? "?"
        }
    }
}
