import FactoryModel
import Foundation

extension MarkdownRenderer {
    /// A merged report's jobs (`mergedFrom`), one line each: the shard, its result, its actions and
    /// failures, or that it is missing. Empty for a report of a single run.
    static func mergedSection(_ report: RunReport) -> String {
        guard let parts = report.mergedFrom, !parts.isEmpty else { return "" }
        var md = "### Jobs\n\n| Job | Result | Actions | Failed |\n|---|---|---:|---:|\n"
        for part in parts {
            let result: String
            switch part.result {
            case .succeeded: result = "✅ succeeded"
            case .partiallySucceeded: result = "⚠️ partially succeeded"
            case .failed: result = "❌ failed"
            case .missing: result = "❌ missing"
            }
            let counts = part.result == .missing ? "- | -" : "\(part.actions) | \(part.failed)"
            md += "| \(cell(part.label)) | \(result) | \(counts) |\n"
        }
        // A missing shard's diagnostic ("shard 3 of 4 is missing"), with what to do, is under Diagnostics.
        return md + "\n"
    }
}
