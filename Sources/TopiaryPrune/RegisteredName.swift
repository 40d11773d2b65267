import Foundation

/// A name that exists only when a registry lists it (a criterion, a sparsity method, an allocator): what requests,
/// recipes and the command line carry. Conformers give the stored `rawValue`, a failable `init?(rawValue:)` that checks
/// the registry, and the registry's names; coding, listing and printing come from here.
public protocol RegisteredName: RawRepresentable, Codable, Hashable, Sendable, CaseIterable, CustomStringConvertible
where RawValue == String {
    /// Every registered name, in the registry's order.
    static var registeredNames: [String] { get }
    /// What one is called in messages (`criterion`, `method`, `allocation`).
    static var kindName: String { get }
}

extension RegisteredName {
    public static var allCases: [Self] { registeredNames.compactMap(Self.init(rawValue:)) }
    public var description: String { rawValue }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        let name = try c.decode(String.self)
        guard let v = Self(rawValue: name) else {
            throw DecodingError.dataCorruptedError(
                in: c, debugDescription: "unknown \(Self.kindName) '\(name)' (\(Self.registeredNames.joined(separator: ", ")))")
        }
        self = v
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}
