import Foundation
import Testing

/// What a nightly user reads: one result everywhere, JSON when asked, reports even when a run
/// stops early, plans that agree with their runs, and retries before anything runs.
@Suite(.serialized)
struct RunResultTests {
    static let instant = ["IMAGEFACTORY_LOCAL_LATENCY": "instant", "IMAGEFACTORY_LOCK_SECONDS": "1"]

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not JSON: \(text)")
    }

    @Test("with every copy failing, the console, the JSON report, the Markdown summary and Azure DevOps say the same result")
    func oneResultEverywhere() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            var env = Self.instant
            env["IMAGEFACTORY_LOCAL_FAULTS"] = "seed=1;copy.copyFailure=1"
            let report = repo.url("out/report.json").path
            let markdown = repo.url("out/summary.md").path
            let run = try ImageFactory.run(["run", "--repo", repo.path, "--report-json", report, "--summary-md", markdown, "--ci", "azure-devops"],
                                           environment: env)
            #expect(run.status == 1, "\(run)")
            let json = try Self.json(try String(contentsOfFile: report, encoding: .utf8))
            #expect(json["result"] as? String == "partiallySucceeded")
            let failed = (json["actions"] as? [[String: Any]] ?? []).filter { $0["result"] as? String == "failed" }
            #expect(!failed.isEmpty && failed.allSatisfy { $0["stage"] as? String == "distribute" }, "only distributions failed")
            #expect(run.stdout.contains("Result: partially succeeded (exit 1)"), "\(run.stdout)")
            #expect(try String(contentsOfFile: markdown, encoding: .utf8).contains("Partially succeeded"))
            #expect(run.stdout.contains("##vso[task.complete result=SucceededWithIssues;]"))
        }
    }

    @Test("run --json prints the run report, and people's lines go to standard error")
    func runJSONPrintsTheReport() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let run = try ImageFactory.run(["run", "--json", "--repo", repo.path], environment: Self.instant)
            #expect(run.status == 0, "\(run)")
            let json = try Self.json(run.stdout)
            #expect(json["formatVersion"] as? Int == 1)
            #expect(json["result"] as? String == "succeeded")
            #expect((json["actions"] as? [Any])?.count == 38)
            #expect(run.stderr.contains("Result: succeeded"))
            // A command that cannot print JSON refuses the flag.
            let report = try ImageFactory.run(["report", "--html", repo.url("c.html").path, "--json", "--repo", repo.path], environment: Self.instant)
            #expect(report.status == 64, "\(report)")
        }
    }

    @Test("a run stopped before it started still writes its reports, with the error")
    func earlyStopWritesReports() throws {
        try FixtureRepository.with { repo in
            try repo.commit(["Configuration/Labs.json": #"{"Labs": [{"SubscriptionId": "x", "LabName": "L", "ImagePaths": ["Nowhere"]}]}"#])
            let report = repo.url("out/report.json").path
            let junit = repo.url("out/junit.xml").path
            let markdown = repo.url("out/summary.md").path
            let run = try ImageFactory.run(["run", "--repo", repo.path, "--report-json", report, "--junit", junit, "--summary-md", markdown],
                                           environment: Self.instant)
            #expect(run.status == 2, "\(run)")
            let json = try Self.json(try String(contentsOfFile: report, encoding: .utf8))
            #expect(json["result"] as? String == "failed")
            let diagnostics = json["diagnostics"] as? [[String: Any]] ?? []
            #expect(!diagnostics.isEmpty, "the report carries the error that stopped the run")
            #expect(FileManager.default.fileExists(atPath: junit))
            #expect(FileManager.default.fileExists(atPath: markdown))
        }
    }

    @Test("distribute alone with nothing captured plans nothing it cannot do, and says why; the run agrees")
    func stageAloneAgreesWithItsPlan() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let dry = try ImageFactory.run(["distribute", "--dry-run", "--json", "--repo", repo.path], environment: Self.instant)
            #expect(dry.status == 0, "\(dry)")
            let plan = try Self.json(dry.stdout)
            #expect((plan["actions"] as? [Any])?.isEmpty == true, "\(dry.stdout)")
            let notes = (plan["diagnostics"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
            #expect(notes.contains { $0.contains("13 distribute") && $0.contains("snap stage") }, "\(notes)")
            let run = try ImageFactory.run(["distribute", "--repo", repo.path], environment: Self.instant)
            #expect(run.status == 0, "\(run)")
            #expect(run.stdout.contains("0 actions"), "\(run.stdout)")
            #expect(run.stdout.contains("wait for the snap stage"), "the run says why it did nothing: \(run.stdout)")
        }
    }

    @Test("transient faults before execution (bootstrap, inventory) are retried like every other call", arguments: 6...10)
    func transientFaultsAreRetried(seed: Int) throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            var env = Self.instant
            env["IMAGEFACTORY_LOCAL_FAULTS"] = "seed=\(seed);*.transient=0.2"
            let run = try ImageFactory.run(["run", "--repo", repo.path], environment: env)
            #expect(run.status == 0, "\(run)")
            #expect(run.stdout.contains("38 succeeded, 0 failed"), "\(run.stdout)")
        }
    }

    @Test("names Azure would refuse: validate warns (the original's placeholders), plan and run stop with exit 2 and the line, before any request")
    func refusedNamesStopBeforeAnyRequest() throws {
        try FixtureRepository.with { repo in
            let labs = """
                {
                  "Labs": [
                    {
                      "SubscriptionId": "<subscription ID that contains the lab>",
                      "ResourceGroup": "rg/../other",
                      "LabName": "<Name of the DevTest Lab>",
                      "ImagePaths": ["Linux"]
                    }
                  ]
                }
                """
            let template = """
                {"resources":[{"type":"Microsoft.DevTestLab/labs/virtualmachines","name":"[parameters('newVMName')]",
                  "properties":{"notes":"n","galleryImageReference":{"publisher":"p","offer":"o","sku":"s","osType":"Linux","version":"latest"}}}]}
                """
            try repo.commit(["Configuration/Labs.json": labs, "Configuration/GoldenImages/Linux/Ubuntu.json": template])
            let validate = try ImageFactory.run(["validate", "--repo", repo.path], environment: Self.instant)
            #expect(validate.status == 0, "\(validate)")
            #expect((validate.stdout + validate.stderr).contains("Azure would refuse"), "\(validate)")
            for command in [["plan"], ["run"], ["run", "--dry-run"]] {
                let result = try ImageFactory.run(command + ["--repo", repo.path], environment: Self.instant)
                #expect(result.status == 2, "\(command): \(result)")
                #expect(result.stderr.contains("Labs.json:6"), "\(command): \(result.stderr)")
                #expect(result.stderr.contains("ResourceGroup") && result.stderr.contains("SubscriptionId"), "\(result.stderr)")
            }
            #expect(!FileManager.default.fileExists(atPath: repo.url(".imagefactory/operations.jsonl").path), "no request reached the cloud")
        }
    }

    @Test("--only and --lab restrict a run's plan to one image path or lab, keep the builds it needs, and say what they left out")
    func onlyAndLab() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            func plan(_ extra: [String]) throws -> [[String: Any]] {
                let dry = try ImageFactory.run(["run", "--dry-run", "--json", "--repo", repo.path] + extra, environment: Self.instant)
                #expect(dry.status == 0, "\(extra): \(dry)")
                let json = try Self.json(dry.stdout)
                if !extra.isEmpty {
                    let notes = (json["diagnostics"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
                    #expect(notes.contains { $0.contains("Left out") }, "\(extra) says what it left out: \(notes)")
                }
                return json["actions"] as? [[String: Any]] ?? []
            }
            let all = try plan([])
            #expect(all.count == 38)
            let linux = try plan(["--only", "linux"])
            #expect(!linux.isEmpty && linux.count < all.count)
            let paths = Set(linux.compactMap { ($0["spec"] as? [String: Any])?["imagePath"] as? String })
            #expect(!paths.isEmpty && paths.allSatisfy { $0.hasPrefix("Linux/") }, "\(paths)")

            let qa = try plan(["--lab", "QALab"])
            let distributions = qa.filter { $0["stage"] as? String == "distribute" }
            #expect(!distributions.isEmpty)
            #expect(distributions.allSatisfy { ($0["id"] as? String)?.hasPrefix("distribute/QALab/") == true }, "\(distributions.map { $0["id"] ?? "" })")
            let builds = Set(qa.filter { $0["stage"] as? String == "build" }.compactMap { $0["id"] as? String })
            let needed = Set(distributions.flatMap { $0["dependsOn"] as? [String] ?? [] }.map { $0.replacingOccurrences(of: "snap/", with: "build/") })
            #expect(builds == needed, "the builds QALab's images need, and no others")

            let wrong = try ImageFactory.run(["run", "--dry-run", "--only", "Nowhere", "--repo", repo.path], environment: Self.instant)
            #expect(wrong.status == 2, "\(wrong)")
            #expect(wrong.stderr.contains("--only Nowhere"))
        }
    }
}
