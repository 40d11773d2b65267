import Foundation

/// How much memory this process can still use: the kernel's `MemAvailable`, lowered by a cgroup (container) limit
/// when one is set. Used to refuse work that could not fit before it allocates.
public enum SystemMemory {
    /// Bytes available now (physical memory when nothing better is known).
    public static func availableBytes() -> Int {
        var available = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        if let meminfo = readWholeFile("/proc/meminfo").map({ String(decoding: $0, as: UTF8.self) }),
            let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
            let kib = Int(line.split(separator: " ").dropFirst().first ?? "")
        {
            available = kib * 1024
        }
        // cgroup v2: memory.max ("max" when unlimited) minus what the group already uses.
        if let limit = number("/sys/fs/cgroup/memory.max"), let used = number("/sys/fs/cgroup/memory.current") {
            available = min(available, max(0, limit - used))
        }
        return available
    }

    private static func number(_ path: String) -> Int? {
        readWholeFile(path).flatMap { Int(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// `bytes` as "1.5 GiB" / "12.0 MiB".
    public static func format(_ bytes: Int) -> String {
        let gib = Double(bytes) / Double(1 << 30)
        if gib >= 1024 { return String(format: "%.1f TiB", gib / 1024) }
        if gib >= 1 { return String(format: "%.1f GiB", gib) }
        return String(format: "%.1f MiB", Double(bytes) / Double(1 << 20))
    }
}
