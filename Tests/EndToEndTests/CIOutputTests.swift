import Foundation
import Testing

/// What a CI log shows for a known failure: the exact annotations, sections and result lines.
@Suite(.serialized)
struct CIOutputTests {
    static let env = ["IMAGEFACTORY_LOCAL_LATENCY": "instant", "IMAGEFACTORY_LOCK_SECONDS": "1"]

    /// A factory with one template whose artifact always fails, and one that works.
    static func failingFactory(_ repo: FixtureRepository) throws {
        func template(_ os: String, _ artifact: String) -> String {
            """
            {"resources":[{"type":"Microsoft.DevTestLab/labs/virtualmachines","name":"[parameters('newVMName')]",
              "properties":{"notes":"\(os) test","galleryImageReference":{"publisher":"p","offer":"o","sku":"s","osType":"\(os)","version":"latest"},
                "artifacts":[{"artifactId":"[resourceId('Microsoft.DevTestLab/labs/artifactSources/artifacts', parameters('labName'), 'public repo', '\(artifact)')]"}]}}]}
            """
        }
        try repo.commit([
            "Configuration/Labs.json": #"{"Labs":[{"SubscriptionId":"11111111-1111-4111-8111-111111111111","ResourceGroup":"rg-qa","LabName":"QALab","ImagePaths":["Linux"]}]}"#,
            "Configuration/GoldenImages/Linux/Broken.json": template("Linux", "linux-tools-fails"),
            "Configuration/GoldenImages/Linux/Good.json": template("Linux", "linux-apt-package"),
        ])
    }

    @Test func azureDevOpsLogShowsTheFailure() throws {
        try FixtureRepository.with { repo in
            try Self.failingFactory(repo)
            let run = try ImageFactory.run(["run", "--repo", repo.path, "--ci", "azure-devops"], environment: Self.env)
            #expect(run.status == 1, "\(run)")
            let lines = run.stdout.split(separator: "\n").map(String.init)
            #expect(lines.contains("##[section]Stage build: 2 actions"))
            // The annotation points at the failing artifact's line in the template (line 3 of the fixture).
            #expect(lines.contains("##vso[task.logissue type=error;sourcepath=Configuration/GoldenImages/Linux/Broken.json;linenumber=3;]build/Linux/Broken.json failed: VM Broken was deleted because artifacts failed: linux-tools-fails: Artifact 'linux-tools-fails' failed: the script exited with code 1."), "\(run.stdout)")
            #expect(lines.contains { $0.hasPrefix("##vso[task.setprogress value=") && $0.hasSuffix(";]ImageFactory") })
            #expect(lines.contains { $0.hasPrefix("##vso[task.complete result=Failed;]ImageFactory run ") })
            #expect(lines.contains { $0.hasPrefix("##vso[task.setsecret]") }, "the VM password is registered as a secret")
            let secrets = lines.filter { $0.hasPrefix("##vso[task.setsecret]") }.map { String($0.dropFirst("##vso[task.setsecret]".count)) }
            for secret in secrets {
                #expect(run.stdout.components(separatedBy: secret).count == 2, "a secret appears only in its setsecret line")
                #expect(!run.stderr.contains(secret))
            }
        }
    }

    @Test func aFailedDistributionPointsAtItsLabInLabsJSON() throws {
        try FixtureRepository.with { repo in
            try Self.failingFactory(repo)
            let run = try ImageFactory.run(["run", "--repo", repo.path, "--ci", "azure-devops"],
                                           environment: Self.env.merging(["IMAGEFACTORY_LOCAL_FAULTS": "seed=7;copy.copyFailure=1"]) { $1 })
            #expect(run.status == 1, "\(run)")
            let lines = run.stdout.split(separator: "\n").map(String.init)
            #expect(lines.contains { $0.hasPrefix("##vso[task.logissue type=error;sourcepath=Configuration/Labs.json;linenumber=1;]distribute/QALab/Linux/Good.json failed: CopyFailed: Copy of Linux_Good-") },
                    "\(run.stdout)")
            #expect(lines.contains { $0.hasPrefix("##vso[task.complete result=Failed;]") }, "a build failed too, so the run failed")
        }
    }

    @Test func githubLogShowsTheFailure() throws {
        try FixtureRepository.with { repo in
            try Self.failingFactory(repo)
            let summary = repo.url("step-summary.md")
            try Data().write(to: summary)
            let run = try ImageFactory.run(["run", "--repo", repo.path, "--ci", "github"],
                                           environment: Self.env.merging(["GITHUB_STEP_SUMMARY": summary.path]) { $1 })
            #expect(run.status == 1, "\(run)")
            let lines = run.stdout.split(separator: "\n").map(String.init)
            #expect(lines.contains("::group::Stage build (2 actions)"))
            #expect(lines.contains("::endgroup::"))
            #expect(lines.contains("::error file=Configuration/GoldenImages/Linux/Broken.json,line=3,title=buildVM::build/Linux/Broken.json failed: VM Broken was deleted because artifacts failed: linux-tools-fails: Artifact 'linux-tools-fails' failed: the script exited with code 1."), "\(run.stdout)")
            #expect(lines.contains { $0.hasPrefix("::add-mask::") })
            let markdown = try String(contentsOf: summary, encoding: .utf8)
            #expect(markdown.contains("**❌ Failed**"))
            #expect(markdown.contains("- **build/Linux/Broken.json** in ImageFactory: VM Broken was deleted because artifacts failed"))
            #expect(markdown.contains("| QALab | Linux_Good-"), "\(markdown)")
        }
    }

    @Test func jsonLogsAndReportsOnFailure() throws {
        try FixtureRepository.with { repo in
            try Self.failingFactory(repo)
            let junit = repo.url("out/junit.xml"), report = repo.url("out/report.json")
            let run = try ImageFactory.run(["run", "--repo", repo.path, "--log-format", "json", "--junit", junit.path, "--report-json", report.path],
                                           environment: Self.env)
            #expect(run.status == 1, "\(run)")
            let logs = run.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] }
            #expect(!logs.isEmpty && logs.count == run.stdout.split(separator: "\n").count, "every line is a JSON object: \(run.stdout)")
            #expect(logs.contains { $0["message"] == "action failed" && $0["action"] == "build/Linux/Broken.json" && $0["level"] == "error" })
            #expect(logs.contains { $0["message"] == "run finished" && $0["result"] == "failed" })
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any]
            #expect(object?["result"] as? String == "failed")
            #expect(try String(contentsOf: junit, encoding: .utf8).contains(#"failures="1""#))
        }
    }

    @Test func plainLogHasTimestampedLinesAndAnExitCodeSummary() throws {
        try FixtureRepository.with { repo in
            try Self.failingFactory(repo)
            let run = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.env)
            #expect(run.status == 1)
            let eventLines = run.stdout.split(separator: "\n").filter { $0.hasPrefix("20") }
            #expect(eventLines.count >= 6)
            #expect(eventLines.allSatisfy { $0.count > 24 && $0.dropFirst(10).first == "T" })
            #expect(run.stdout.contains("FAILED buildVM build/Linux/Broken.json in ImageFactory: VM Broken was deleted because artifacts failed"))
            #expect(run.stdout.contains("Result: failed (exit 1)"))
            #expect(!run.stdout.contains("##vso") && !run.stdout.contains("::error"))
        }
    }
}

/// On a terminal: one live line redrawn in place, with each stage's progress, the jobs in flight and the time.
struct TerminalProgressTests {
    @Test func liveProgressLineOnATerminal() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            // `script` gives the run a pseudo-terminal, as a person's shell would.
            let command = "'\(try ImageFactory.binary().path)' run --repo '\(repo.path)'"
            let result = try Subprocess.run(URL(fileURLWithPath: "/usr/bin/script"), ["-q", "-e", "-c", command, "/dev/null"], in: repo.root,
                                            environment: ["IMAGEFACTORY_LOCAL_LATENCY": "fast", "IMAGEFACTORY_LOCK_SECONDS": "1", "TERM": "xterm"])
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("\r\u{1B}[2Kbuild "), "the status line is redrawn in place")
            let status = result.stdout.components(separatedBy: "\r\u{1B}[2K").filter { $0.contains("in flight") }
            #expect(!status.isEmpty)
            #expect(status.contains { $0.contains("build") && $0.contains("snap") && $0.contains("distribute 0/13") && $0.contains(" in flight  |  ") })
            #expect(result.stdout.contains("Result: succeeded"))
        }
    }
}
