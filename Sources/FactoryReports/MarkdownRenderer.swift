import FactoryEngine
import FactoryModel
import Foundation

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
        md += mergedSection(report)
        md += "| Stage | Succeeded | Failed | Skipped |\n|---|---:|---:|---:|\n"
        for stage in Stage.allCases {
            let actions = report.actions.filter { $0.stage == stage }
            guard !actions.isEmpty else { continue }
            md += "| \(stage.rawValue) | \(actions.filter { $0.result == .succeeded }.count) | \(actions.filter { $0.result == .failed }.count) | \(actions.filter { $0.result == .skipped }.count) |\n"
        }
        let distributed = report.actions.filter { $0.stage == .distribute && $0.result == .succeeded && ($0.kind == .distributeImage || $0.kind == .repairImage) }
        if !distributed.isEmpty {
            md += "\n### Images delivered\n\n| Lab | Image | Path |\n|---|---|---|\n"
            for action in distributed.sorted(by: { ($0.target ?? "", $0.imageName ?? "") < ($1.target ?? "", $1.imageName ?? "") }) {
                md += "| \(cell(action.target ?? "")) | \(cell(action.imageName ?? "")) | \(cell(action.imagePath ?? ""))\(action.crossRegion == true ? " (cross-region)" : "") |\n"
            }
        }
        let published = report.actions.filter { $0.kind == .publishVersion }
        if !published.isEmpty {
            md += "\n### Gallery versions\n\n| Gallery | Path | Version | Regions |\n|---|---|---|---|\n"
            for action in published.sorted(by: { ($0.target ?? "", $0.imagePath ?? "") < ($1.target ?? "", $1.imagePath ?? "") }) {
                let regions = (action.replication ?? []).map { "\($0.region) \($0.state.lowercased() == "completed" ? "✓" : $0.state.lowercased())" }.joined(separator: ", ")
                md += "| \(cell(action.target ?? "")) | \(cell(action.imagePath ?? "")) | \(cell(action.galleryVersion ?? "-")) | \(cell(regions.isEmpty ? (action.result == .succeeded ? "✓" : "-") : regions)) |\n"
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
