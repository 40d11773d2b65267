import Foundation

/// How much memory this process can still use: the kernel's `MemAvailable`, lowered by a cgroup (container) limit
/// and by the process's own limits (`ulimit -v`, `ulimit -d`) when they are set. Used to refuse work that could not
/// fit before it allocates.
public enum SystemMemory {
    /// Bytes available now (physical memory when nothing better is known).
    public static func availableBytes() -> Int {
        var available = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        if let meminfo = procText("/proc/meminfo"),
            let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
            let kib = Int(line.split(separator: " ").dropFirst().first ?? "")
        {
            available = kib * 1024
        }
        // cgroup v2: memory.max ("max" when unlimited) minus what the group already uses.
        // Page cache the kernel can drop (the model file just read, say) counts as used there but is not in the way.
        if let limit = number("/sys/fs/cgroup/memory.max"), let used = number("/sys/fs/cgroup/memory.current") {
            let reclaimable = stat("/sys/fs/cgroup/memory.stat", "inactive_file") ?? 0
            available = min(available, max(0, limit - used + reclaimable))
        }
        // cgroup v1 (older container hosts): this process's memory group, its limit (about 2^63 when unlimited) less usage.
        if let (limit, used, reclaimable) = cgroupV1Memory(), limit < 1 << 60 {
            available = min(available, max(0, limit - used + reclaimable))
        }
        // A process limit (`ulimit -v`, `ulimit -d`) less what this process already maps.
        let status = procText("/proc/self/status") ?? ""
        func kib(_ key: String) -> Int? {
            // "VmSize:\t  123456 kB"
            status.split(separator: "\n").first { $0.hasPrefix(key + ":") }
                .flatMap { Int($0.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces).prefix { $0.isNumber }) }
        }
        for (resource, key) in [(RLIMIT_AS, "VmSize"), (RLIMIT_DATA, "VmData")] {
            var limit = rlimit()
            guard getrlimit(__rlimit_resource_t(resource.rawValue), &limit) == 0,
                limit.rlim_cur < UInt(Int.max), let used = kib(key)
            else { continue }
            available = min(available, max(0, Int(limit.rlim_cur) - used * 1024))
        }
        return available
    }

    /// The process's address-space limit (`ulimit -v`), nil when there is none.
    public static var addressSpaceLimit: Int? {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur < UInt(Int.max) else { return nil }
        return Int(limit.rlim_cur)
    }

    /// Why an allocation of `bytes` failed, in one line: what was asked and what is available, and, under an
    /// address-space limit, that address space (not memory) ran out — the BLAS threads reserve their own.
    public static func outOfMemoryMessage(_ bytes: Int) -> String {
        var m = "out of memory: \(format(bytes)) could not be allocated (\(format(availableBytes())) available)"
        if let limit = addressSpaceLimit {
            m += "; the address-space limit (ulimit -v) of \(format(limit)) is used up"
            m +=
                ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == "1"
                ? ": raise it (the model's fp32 weights alone take 4 bytes per parameter)"
                : ", part of it reserved by each BLAS thread: raise it or run with OPENBLAS_NUM_THREADS=1"
        } else {
            m += "; use smaller sizes"
        }
        return m
    }

    /// The limit and usage of the cgroup v1 memory group this process is in (`/proc/self/cgroup`'s `memory:` line), read
    /// where the hierarchy is mounted (`/sys/fs/cgroup/memory`); nil without cgroup v1.
    static func cgroupV1Memory() -> (limit: Int, used: Int, reclaimable: Int)? {
        guard let lines = procText("/proc/self/cgroup")?.split(separator: "\n"),
            let line = lines.first(where: {
                $0.split(separator: ":", maxSplits: 2).dropFirst().first?.split(separator: ",").contains("memory") == true
            }),
            let group = line.split(separator: ":", maxSplits: 2).last
        else { return nil }
        for dir in ["/sys/fs/cgroup/memory" + group, "/sys/fs/cgroup/memory"] {
            if let limit = number(dir + "/memory.limit_in_bytes"), let used = number(dir + "/memory.usage_in_bytes") {
                return (limit, used, stat(dir + "/memory.stat", "total_inactive_file") ?? 0)
            }
        }
        return nil
    }

    /// One field of a cgroup `memory.stat` file (`name value` lines).
    private static func stat(_ path: String, _ key: String) -> Int? {
        procText(path)?.split(separator: "\n").first { $0.hasPrefix(key + " ") }.flatMap { Int($0.dropFirst(key.count + 1)) }
    }

    private static func number(_ path: String) -> Int? {
        procText(path).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// A file of /proc or /sys (they report a size of 0, so they are read as a stream, not by their size).
    private static func procText(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    /// `bytes` as "1.5 GiB" / "12.0 MiB".
    public static func format(_ bytes: Int) -> String {
        let gib = Double(bytes) / Double(1 << 30)
        if gib >= 1024 { return String(format: "%.1f TiB", gib / 1024) }
        if gib >= 1 { return String(format: "%.1f GiB", gib) }
        return String(format: "%.1f MiB", Double(bytes) / Double(1 << 20))
    }
}
