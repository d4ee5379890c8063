import FactoryEngine
import FactoryModel
import Foundation

/// JUnit XML: one test case per action, failures as failures, so Azure DevOps and GitHub show
/// them in their test views.
public enum JUnitRenderer {
    public static func render(_ report: RunReport) -> String {
        var xml = #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"
        let missing = missingShards(report).count
        let failures = report.actions.filter { $0.result == .failed }.count + missing
        let skipped = report.actions.filter { $0.result == .skipped }.count
        xml += #"<testsuites name="imagefactory" tests="\#(report.actions.count + missing)" failures="\#(failures)" errors="0" skipped="\#(skipped)" time="\#(seconds(report.durationSeconds))">"# + "\n"
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
        xml += missingShardsSuite(report)
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
