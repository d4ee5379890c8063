import FactoryModel
import Foundation

extension JUnitRenderer {
    /// The shards a merged report lacks: one failed test case each in a `shards` suite, so a missing
    /// shard shows in CI's test view, not only in the summary.
    static func missingShards(_ report: RunReport) -> [RunReport.MergedPart] {
        report.mergedFrom?.filter { $0.result == .missing } ?? []
    }

    static func missingShardsSuite(_ report: RunReport) -> String {
        let missing = missingShards(report)
        guard !missing.isEmpty else { return "" }
        var xml = #"  <testsuite name="shards" tests="\#(missing.count)" failures="\#(missing.count)" errors="0" skipped="0" time="0.000" timestamp="\#(RecordTimestamp.format(report.startedAt))">"# + "\n"
        for part in missing {
            xml += #"    <testcase classname="imagefactory.shards" name="\#(escape(part.label))" time="0.000">"# + "\n"
            xml += #"      <failure message="\#(escape(part.label)) is missing" type="missingShard">No report of \#(escape(part.label)) was merged: its job did not finish, or its report was not published.</failure>"# + "\n"
            xml += "    </testcase>\n"
        }
        return xml + "  </testsuite>\n"
    }
}
