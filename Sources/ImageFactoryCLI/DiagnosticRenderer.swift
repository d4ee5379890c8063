import FactoryModel
import Foundation

/// Shows diagnostics to people (compiler-style lines) and to CI systems (annotations).
enum DiagnosticRenderer {
    static func text(_ d: Diagnostic) -> String {
        var line = d.location.map { "\($0): " } ?? ""
        line += "\(d.severity.rawValue): \(d.message)"
        if let hint = d.hint { line += "\n    hint: \(hint)" }
        return line
    }

    static func printText(_ diagnostics: [Diagnostic], to write: (String) -> Void) {
        for d in diagnostics.sorted(by: order) { write(text(d)) }
    }

    /// Errors first, then by file and line, so the output reads top-down.
    static func order(_ a: Diagnostic, _ b: Diagnostic) -> Bool {
        if a.severity != b.severity { return a.severity < b.severity }
        if (a.file ?? "") != (b.file ?? "") { return (a.file ?? "") < (b.file ?? "") }
        return (a.line ?? 0) < (b.line ?? 0)
    }

    /// Azure DevOps `##vso[task.logissue]` or GitHub `::error` lines; notes are not annotated.
    static func annotations(_ diagnostics: [Diagnostic], ci: CIMode, title: String = "ImageFactory") -> [String] {
        diagnostics.sorted(by: order).compactMap { d in
            guard d.severity != .note else { return nil }
            let message = d.message + (d.hint.map { " Hint: \($0)" } ?? "")
            switch ci {
            case .none:
                return nil
            case .azureDevOps:
                var properties = "type=\(d.severity == .error ? "error" : "warning")"
                if let file = d.file { properties += ";sourcepath=\(azureEscape(file))" }
                if let line = d.line { properties += ";linenumber=\(line)" }
                if let column = d.column { properties += ";columnnumber=\(column)" }
                return "##vso[task.logissue \(properties);]\(azureEscape(message))"
            case .github:
                var properties: [String] = []
                if let file = d.file { properties.append("file=\(githubPropertyEscape(file))") }
                if let line = d.line { properties.append("line=\(line)") }
                if let column = d.column { properties.append("col=\(column)") }
                properties.append("title=\(githubPropertyEscape(title))")
                return "::\(d.severity == .error ? "error" : "warning") \(properties.joined(separator: ","))::\(githubDataEscape(message))"
            }
        }
    }

    static func printAnnotations(_ diagnostics: [Diagnostic], ci: CIMode) {
        for line in annotations(diagnostics, ci: ci) { Console.out(line) }
    }

    /// Azure DevOps logging-command escaping.
    static func azureEscape(_ s: String) -> String {
        s.replacingOccurrences(of: "%", with: "%AZP25").replacingOccurrences(of: ";", with: "%3B")
            .replacingOccurrences(of: "\r", with: "%0D").replacingOccurrences(of: "\n", with: "%0A")
            .replacingOccurrences(of: "]", with: "%5D")
    }

    static func githubDataEscape(_ s: String) -> String {
        s.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "\r", with: "%0D").replacingOccurrences(of: "\n", with: "%0A")
    }

    static func githubPropertyEscape(_ s: String) -> String {
        githubDataEscape(s).replacingOccurrences(of: ":", with: "%3A").replacingOccurrences(of: ",", with: "%2C")
    }
}
