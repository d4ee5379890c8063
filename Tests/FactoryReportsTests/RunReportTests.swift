import FactoryModel
import Foundation
import Testing
#if canImport(FoundationXML)
import FoundationXML
#endif
import FactoryEngine
@testable import FactoryReports

/// Reports of a run: the JSON report, JUnit XML (read back with an XML parser) and the Markdown
/// summary (compared with a golden file).
struct RunReportTests {
    static let start = Date(timeIntervalSince1970: 1_795_323_000)
    static let lab = LabID(subscriptionId: "s1", resourceGroup: "rg", name: "QALab")

    /// A run where a build failed (so its capture and distribution were skipped), one distribution failed and others succeeded.
    static func summary(buildFails: Bool) -> RunSummary {
        func result(_ action: PlanAction, _ outcome: ActionResult.Outcome, _ seconds: Double, _ message: String? = nil) -> ActionResult {
            ActionResult(action: action, outcome: outcome, message: message, start: start, end: start.addingTimeInterval(seconds))
        }
        let factory = LabID(subscriptionId: "s1", resourceGroup: "rg", name: "ImageFactory")
        let devLab = LabID(subscriptionId: "s1", resourceGroup: "rg", name: "DevLab")
        let container = ContainerID(account: StorageAccountID(subscriptionId: "s1", resourceGroup: "rg", name: "afactory"), name: "imagefactoryvhds")
        let vm = VirtualMachineID(lab: factory, name: "Ubuntu")
        let build = PlanAction(id: "build/Linux/Ubuntu.json", stage: .build, operation: .buildVM(BuildVMSpec(
            vm: vm, imagePath: "Linux/Ubuntu.json", templateSha: "abc", osState: .generalized, template: "{}", parameters: [:], artifacts: [],
            tags: [:], deploymentName: "imagefactory-ubuntu")), reason: "new template: no image yet")
        let snap = PlanAction(id: "snap/Linux/Ubuntu.json", stage: .snap, operation: .captureImage(CaptureSpec(
            vm: vm, imageName: "Linux_Ubuntu-Nov-22-2026", imagePath: "Linux/Ubuntu.json", description: "", osType: .linux, osState: .generalized,
            commit: nil, templateSha: "abc", vhd: BlobID(container: container, name: "Linux_Ubuntu-Nov-22-2026.vhd"),
            record: BlobID(container: container, name: "Linux_Ubuntu-Nov-22-2026.json"), adopted: false)), reason: "capture", dependsOn: [build.id])
        func distribution(_ lab: LabID, crossRegion: Bool) -> PlanOperation {
            .distributeImage(DistributionSpec(
                image: CustomImageID(lab: lab, name: "Windows_Server-Nov-21-2026"), imagePath: "Windows/Server.json",
                source: BlobID(container: container, name: "Windows_Server-Nov-21-2026.vhd"),
                destination: BlobID(container: ContainerID(account: StorageAccountID(subscriptionId: "s1", resourceGroup: "rg", name: "a" + lab.name.lowercased()),
                                                           name: "imagefactoryvhds"), name: "Windows_Server-Nov-21-2026.vhd"),
                osType: .windows, generalized: true, description: "", tags: [:], expectedMD5: nil, capture: nil, crossRegion: crossRegion))
        }
        let ok = PlanAction(id: "distribute/DevLab/Windows/Server.json", stage: .distribute, operation: distribution(devLab, crossRegion: false), reason: "lab lacks it")
        let bad = PlanAction(id: "distribute/QALab/Windows/Server.json", stage: .distribute, operation: distribution(lab, crossRegion: true), reason: "lab lacks it")
        var results = [
            result(ok, .succeeded, 12.5),
            result(bad, .failed, 3.25, "CopyFailed: Copy of Windows_Server-Nov-21-2026 to QALab ended failed: 500 InternalError <part-way> & \"quoted\""),
        ]
        if buildFails {
            results.insert(result(build, .failed, 40, "VM Ubuntu was deleted because artifacts failed: linux-tools-fails: Artifact 'linux-tools-fails' failed: the script exited with code 1."), at: 0)
            results.insert(result(snap, .skipped, 0, "skipped: build/Linux/Ubuntu.json did not succeed"), at: 1)
        }
        return RunSummary(runID: "20261122-045000-abcdef", commit: "0123456789abcdef0123456789abcdef01234567", results: results, diagnostics: [])
    }

    @Test func resultFollowsTheDocumentedRule() {
        let partial = RunReport(summary: Self.summary(buildFails: false), startedAt: Self.start, finishedAt: Self.start.addingTimeInterval(20))
        #expect(partial.result == .partiallySucceeded)
        let failed = RunReport(summary: Self.summary(buildFails: true), startedAt: Self.start, finishedAt: Self.start.addingTimeInterval(60))
        #expect(failed.result == .failed)
        let clean = RunReport(summary: RunSummary(runID: "r", commit: nil, results: [], diagnostics: []), startedAt: Self.start, finishedAt: Self.start)
        #expect(clean.result == .succeeded)
        let configError = RunReport(summary: RunSummary(runID: "r", commit: nil, results: [], diagnostics: [.error("lab missing")]), startedAt: Self.start, finishedAt: Self.start)
        #expect(configError.result == .failed)
    }

    @Test func jsonReportIsVersionedAndComplete() throws {
        let report = RunReport(summary: Self.summary(buildFails: true), startedAt: Self.start, finishedAt: Self.start.addingTimeInterval(60))
        let object = try #require(try JSONSerialization.jsonObject(with: report.encoded()) as? [String: Any])
        #expect(object["formatVersion"] as? Int == 1)
        #expect(object["result"] as? String == "failed")
        let actions = try #require(object["actions"] as? [[String: Any]])
        #expect(actions.count == 4)
        let failed = try #require(actions.first { $0["id"] as? String == "distribute/QALab/Windows/Server.json" })
        #expect(failed["stage"] as? String == "distribute")
        #expect(failed["target"] as? String == "QALab")
        #expect(failed["result"] as? String == "failed")
        #expect(failed["durationSeconds"] as? Double == 3.25)
        #expect((failed["error"] as? String)?.hasPrefix("CopyFailed") == true)
    }

    @Test func junitParsesWithAnXMLParser() throws {
        let report = RunReport(summary: Self.summary(buildFails: true), startedAt: Self.start, finishedAt: Self.start.addingTimeInterval(60))
        let xml = JUnitRenderer.render(report)
        let document = try XMLDocument(data: Data(xml.utf8))
        let root = try #require(document.rootElement())
        #expect(root.name == "testsuites")
        #expect(root.attribute(forName: "tests")?.stringValue == "4")
        #expect(root.attribute(forName: "failures")?.stringValue == "2")
        #expect(root.attribute(forName: "skipped")?.stringValue == "1")
        let suites = root.elements(forName: "testsuite")
        #expect(suites.map { $0.attribute(forName: "name")?.stringValue } == ["build", "snap", "distribute"])
        let cases = suites.flatMap { $0.elements(forName: "testcase") }
        #expect(cases.count == 4)
        let copy = try #require(cases.first { $0.attribute(forName: "name")?.stringValue == "distribute/QALab/Windows/Server.json" })
        let failure = try #require(copy.elements(forName: "failure").first)
        #expect(failure.stringValue == "CopyFailed: Copy of Windows_Server-Nov-21-2026 to QALab ended failed: 500 InternalError <part-way> & \"quoted\"")
        #expect(failure.attribute(forName: "type")?.stringValue == "distributeImage")
        #expect(copy.attribute(forName: "classname")?.stringValue == "imagefactory.distribute.QALab")
        #expect(copy.attribute(forName: "time")?.stringValue == "3.250")
        let skipped = try #require(cases.first { $0.attribute(forName: "name")?.stringValue == "snap/Linux/Ubuntu.json" })
        #expect(skipped.elements(forName: "skipped").count == 1)
        let passed = try #require(cases.first { $0.attribute(forName: "name")?.stringValue == "distribute/DevLab/Windows/Server.json" })
        #expect(passed.children?.isEmpty ?? true)
    }

    @Test func markdownSummaryMatchesTheGoldenFile() throws {
        let report = RunReport(summary: Self.summary(buildFails: true), startedAt: Self.start, finishedAt: Self.start.addingTimeInterval(61.2))
        let markdown = MarkdownRenderer.render(report)
        let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/run-summary.md")
        if ProcessInfo.processInfo.environment["IMAGEFACTORY_UPDATE_GOLDEN"] == "1" {
            try Data(markdown.utf8).write(to: golden)
        }
        let expected = try String(contentsOf: golden, encoding: .utf8)
        #expect(markdown == expected)
    }
}
