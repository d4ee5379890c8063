import FactoryModel
import Foundation

/// The versioned JSON report of a run (`--report-json`): every action with its stage, target,
/// result, duration and error. Built from a `RunSummary`; renderers below turn it into JUnit XML
/// and a Markdown summary.
public struct RunReport: Codable, Sendable, Equatable {
    public static let currentFormatVersion = 1

    public enum Result: String, Codable, Sendable {
        /// Every action succeeded and nothing is in error.
        case succeeded
        /// Some actions failed, but every build and capture succeeded: new images exist, not everywhere yet.
        case partiallySucceeded
        case failed
    }

    public struct Action: Codable, Sendable, Equatable {
        public var id: String
        public var stage: Stage
        public var kind: ActionKind
        /// The lab (or factory lab) the action is about.
        public var target: String?
        public var imagePath: String?
        public var imageName: String?
        public var result: ActionResult.Outcome
        public var durationSeconds: Double
        public var error: String?
        public var reason: String
        public var crossRegion: Bool?
    }

    public var formatVersion: Int
    public var runId: String
    public var commit: String?
    public var startedAt: Date
    public var finishedAt: Date
    public var result: Result
    public var actions: [Action]
    public var diagnostics: [Diagnostic]

    public init(summary: RunSummary, startedAt: Date, finishedAt: Date) {
        formatVersion = RunReport.currentFormatVersion
        runId = summary.runID
        commit = summary.commit
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        actions = summary.results.map {
            Action(id: $0.action.id, stage: $0.action.stage, kind: $0.action.kind, target: $0.action.lab, imagePath: $0.action.imagePath,
                   imageName: $0.action.imageName, result: $0.outcome, durationSeconds: ($0.duration * 1000).rounded() / 1000,
                   error: $0.outcome == .succeeded ? nil : $0.message, reason: $0.action.reason, crossRegion: $0.action.crossRegion)
        }
        diagnostics = summary.diagnostics
        result = RunReport.classify(actions: actions, diagnostics: diagnostics)
    }

    /// The documented rule: succeeded when nothing failed; partially succeeded when only
    /// distribution, cleanup or retirement actions failed while some action succeeded;
    /// failed otherwise (a build or capture failed, nothing succeeded, or a configuration error).
    public static func classify(actions: [Action], diagnostics: [Diagnostic]) -> Result {
        let failed = actions.filter { $0.result == .failed }
        if failed.isEmpty && !diagnostics.hasErrors { return .succeeded }
        let buildFailed = failed.contains { $0.stage == .build || $0.stage == .snap }
        let anySucceeded = actions.contains { $0.result == .succeeded }
        if !buildFailed && anySucceeded { return .partiallySucceeded }
        return .failed
    }

    public var failedActions: [Action] { actions.filter { $0.result == .failed } }
    public var durationSeconds: Double { finishedAt.timeIntervalSince(startedAt) }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(self)
    }
}

/// JUnit XML: one test case per action, failures as failures, so Azure DevOps and GitHub show
/// them in their test views.
public enum JUnitRenderer {
    public static func render(_ report: RunReport) -> String {
        var xml = #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"
        let failures = report.actions.filter { $0.result == .failed }.count
        let skipped = report.actions.filter { $0.result == .skipped }.count
        xml += #"<testsuites name="imagefactory" tests="\#(report.actions.count)" failures="\#(failures)" errors="0" skipped="\#(skipped)" time="\#(seconds(report.durationSeconds))">"# + "\n"
        for stage in Stage.allCases {
            let actions = report.actions.filter { $0.stage == stage }
            guard !actions.isEmpty else { continue }
            let stageFailures = actions.filter { $0.result == .failed }.count
            let stageSkipped = actions.filter { $0.result == .skipped }.count
            let time = actions.reduce(0) { $0 + $1.durationSeconds }
            xml += #"  <testsuite name="\#(stage.rawValue)" tests="\#(actions.count)" failures="\#(stageFailures)" errors="0" skipped="\#(stageSkipped)" time="\#(seconds(time))" timestamp="\#(RecordTimestamp.format(report.startedAt))">"# + "\n"
            for action in actions {
                let classname = "imagefactory.\(stage.rawValue)" + (action.target.map { ".\(escape($0))" } ?? "")
                xml += #"    <testcase classname="\#(classname)" name="\#(escape(action.id))" time="\#(seconds(action.durationSeconds))">"#
                switch action.result {
                case .succeeded:
                    break
                case .failed:
                    let message = action.error ?? "failed"
                    xml += "\n" + #"      <failure message="\#(escape(firstLine(message)))" type="\#(action.kind.rawValue)">\#(escape(message))</failure>"# + "\n    "
                case .skipped:
                    xml += "\n" + #"      <skipped message="\#(escape(action.error ?? "skipped"))"/>"# + "\n    "
                }
                xml += "</testcase>\n"
            }
            xml += "  </testsuite>\n"
        }
        xml += "</testsuites>\n"
        return xml
    }

    static func seconds(_ value: Double) -> String { String(format: "%.3f", value) }
    static func firstLine(_ s: String) -> String { s.split(separator: "\n").first.map(String.init) ?? s }

    static func escape(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\n", "\r", "\t": out.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 { continue }  // not allowed in XML 1.0
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

/// The Markdown summary for `$GITHUB_STEP_SUMMARY` (or `--summary-md`).
public enum MarkdownRenderer {
    public static func render(_ report: RunReport) -> String {
        var md = "## ImageFactory run \(report.runId)\n\n"
        let label: String
        switch report.result {
        case .succeeded: label = "✅ Succeeded"
        case .partiallySucceeded: label = "⚠️ Partially succeeded"
        case .failed: label = "❌ Failed"
        }
        let ok = report.actions.filter { $0.result == .succeeded }.count
        let failed = report.failedActions.count
        let skipped = report.actions.filter { $0.result == .skipped }.count
        md += "**\(label)** at commit `\(report.commit.map { String($0.prefix(12)) } ?? "worktree")`: "
        md += "\(report.actions.count) actions, \(ok) succeeded, \(failed) failed, \(skipped) skipped, in \(String(format: "%.1f", report.durationSeconds)) s.\n\n"
        md += "| Stage | Succeeded | Failed | Skipped |\n|---|---:|---:|---:|\n"
        for stage in Stage.allCases {
            let actions = report.actions.filter { $0.stage == stage }
            guard !actions.isEmpty else { continue }
            md += "| \(stage.rawValue) | \(actions.filter { $0.result == .succeeded }.count) | \(actions.filter { $0.result == .failed }.count) | \(actions.filter { $0.result == .skipped }.count) |\n"
        }
        let distributed = report.actions.filter { $0.stage == .distribute && $0.result == .succeeded }
        if !distributed.isEmpty {
            md += "\n### Images delivered\n\n| Lab | Image | Path |\n|---|---|---|\n"
            for action in distributed.sorted(by: { ($0.target ?? "", $0.imageName ?? "") < ($1.target ?? "", $1.imageName ?? "") }) {
                md += "| \(cell(action.target ?? "")) | \(cell(action.imageName ?? "")) | \(cell(action.imagePath ?? ""))\(action.crossRegion == true ? " (cross-region)" : "") |\n"
            }
        }
        if failed > 0 {
            md += "\n### Failures\n\n"
            for action in report.failedActions {
                md += "- **\(cell(action.id))**\(action.target.map { " in \(cell($0))" } ?? ""): \(cell(action.error ?? "failed"))\n"
            }
        }
        let errors = report.diagnostics.filter { $0.severity != .note }
        if !errors.isEmpty {
            md += "\n### Diagnostics\n\n"
            for d in errors {
                md += "- \(d.severity == .error ? "❌" : "⚠️") \(d.location.map { "`\($0)`: " } ?? "")\(cell(d.message))\n"
            }
        }
        return md
    }

    /// Table-safe and inert: no pipes, no newlines, no HTML (GitHub would render `<tag>`).
    static func cell(_ s: String) -> String {
        s.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
            .replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
