import Foundation

/// A progress bar on standard error: redrawn in place on a terminal (at most ~10 times a second),
/// one line per 10% otherwise (logs, CI). Shows rate and ETA.
public final class ProgressBar: @unchecked Sendable {
    public let label: String
    public let total: Int
    public let unit: String
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var lastDecile = -1
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private let enabled: Bool
    public private(set) var current = 0
    private var extra = ""

    public init(_ label: String, total: Int, unit: String = "it", enabled: Bool = true) {
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        self.enabled = enabled
    }

    /// Advances by `n` and optionally replaces the trailing status text (e.g. a running loss).
    public func advance(by n: Int = 1, status: String? = nil) {
        current = min(total, current + n)
        if let status { extra = status }
        draw(force: current == total)
    }

    /// Finishes the bar (newline on a terminal).
    public func finish() {
        current = total
        draw(force: true)
        if enabled && isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    private func draw(force: Bool) {
        guard enabled else { return }
        let now = Date()
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(current) / elapsed : 0
        let eta = rate > 0 ? Double(total - current) / rate : 0
        let fraction = Double(current) / Double(total)
        if isTerminal {
            guard force || now.timeIntervalSince(lastDraw) > 0.1 else { return }
            lastDraw = now
            let width = 28, filled = Int(fraction * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            let line = String(
                format: "\r%@ %@ %3.0f%% %d/%d %.1f %@/s ETA %@ %@", label, bar, fraction * 100, current, total,
                rate, unit, Self.clock(eta), extra)
            FileHandle.standardError.write(Data((line + "\u{1B}[K").utf8))
        } else {
            let decile = Int(fraction * 10)
            guard decile > lastDecile else { return }
            lastDecile = decile
            let line = String(
                format: "%@: %3.0f%% (%d/%d, %.1f %@/s, elapsed %@) %@\n", label, fraction * 100, current, total,
                rate, unit, Self.clock(elapsed), extra)
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
