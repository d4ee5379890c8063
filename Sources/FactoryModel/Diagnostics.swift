import Foundation

/// One finding about the configuration or a run: what is wrong, where, and what to do.
///
/// Validation collects every diagnostic instead of stopping at the first, so a user fixes
/// a configuration in one pass; renderers (text, JSON, CI annotations) live in the CLI.
public struct Diagnostic: Codable, Sendable, Equatable, Hashable {
    public enum Severity: String, Codable, Sendable, Comparable {
        case error, warning, note

        private var rank: Int { self == .error ? 0 : (self == .warning ? 1 : 2) }
        public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
    }

    public var severity: Severity
    public var message: String
    /// Path of the file inside the repository (e.g. `Configuration/Labs.json`), when known.
    public var file: String?
    public var line: Int?
    public var column: Int?
    public var hint: String?

    public init(_ severity: Severity, _ message: String, file: String? = nil, line: Int? = nil,
                column: Int? = nil, hint: String? = nil) {
        self.severity = severity
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.hint = hint
    }

    public static func error(_ message: String, file: String? = nil, line: Int? = nil, column: Int? = nil, hint: String? = nil) -> Diagnostic {
        Diagnostic(.error, message, file: file, line: line, column: column, hint: hint)
    }

    public static func warning(_ message: String, file: String? = nil, line: Int? = nil, column: Int? = nil, hint: String? = nil) -> Diagnostic {
        Diagnostic(.warning, message, file: file, line: line, column: column, hint: hint)
    }

    public static func note(_ message: String, file: String? = nil, line: Int? = nil, hint: String? = nil) -> Diagnostic {
        Diagnostic(.note, message, file: file, line: line, hint: hint)
    }

    /// `file:line:column` as compilers print it, or nil when the location is unknown.
    public var location: String? {
        guard let file else { return nil }
        var text = file
        if let line { text += ":\(line)" }
        if let line, let column, line > 0 { text += ":\(column)" }
        return text
    }
}

extension Array where Element == Diagnostic {
    public var hasErrors: Bool { contains { $0.severity == .error } }
    public var errors: [Diagnostic] { filter { $0.severity == .error } }
    public var warnings: [Diagnostic] { filter { $0.severity == .warning } }
}

/// The process exit codes every command uses, so scripts and CI can tell failures apart.
public enum FactoryExitCode: Int32, Sendable {
    /// Success; warnings allowed.
    case success = 0
    /// Some work failed; the summary names what.
    case workFailed = 1
    /// Invalid configuration or input; nothing was changed.
    case invalidInput = 2
    /// The backend could not be reached or authentication failed.
    case backendUnavailable = 3
    /// The factory is busy (another run holds its lock): nothing was done; try again later.
    case busy = 75
    /// Command-line usage error.
    case usage = 64
    /// Interrupted (Ctrl-C).
    case interrupted = 130
}

/// An error a user can act on: it carries the exit code it maps to and the diagnostics to show.
public struct FactoryError: Error, Sendable, CustomStringConvertible, LocalizedError {
    public var exitCode: FactoryExitCode
    public var diagnostics: [Diagnostic]

    public init(_ exitCode: FactoryExitCode, _ diagnostics: [Diagnostic]) {
        self.exitCode = exitCode
        self.diagnostics = diagnostics
    }

    public init(_ exitCode: FactoryExitCode, _ message: String, file: String? = nil, hint: String? = nil) {
        self.init(exitCode, [.error(message, file: file, hint: hint)])
    }

    public static func invalidInput(_ message: String, file: String? = nil, hint: String? = nil) -> FactoryError {
        FactoryError(.invalidInput, message, file: file, hint: hint)
    }

    public var description: String {
        diagnostics.map { d in
            var s = d.location.map { "\($0): " } ?? ""
            s += d.message
            if let hint = d.hint { s += " (\(hint))" }
            return s
        }.joined(separator: "\n")
    }

    public var errorDescription: String? { description }
}
