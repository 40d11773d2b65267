import Foundation

/// Reading JSON with Foundation without its one silent loss: `JSONSerialization` drops a U+FEFF (byte-order mark) at the
/// start of a string value written raw rather than as `\ufeff` — Gemma 3's vocabulary has six tokens that begin with it,
/// which came back from a checkpoint as duplicates of other tokens and made llama.cpp refuse the exported GGUF.
public enum JSONText {
    /// The object of `data` with every raw U+FEFF inside a string kept (a leading one, before the JSON, is skipped).
    public static func object(with data: Data) throws -> Any {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        guard data.firstRange(of: bom) != nil else { return try JSONSerialization.jsonObject(with: data) }
        var bytes = [UInt8](data)
        if bytes.starts(with: bom) { bytes.removeFirst(3) }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count + 64)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0xEF && i + 2 < bytes.count && bytes[i + 1] == 0xBB && bytes[i + 2] == 0xBF {
                out += Array("\\ufeff".utf8)  // only valid inside a string, where it means the same character
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return try JSONSerialization.jsonObject(with: Data(out))
    }
}
