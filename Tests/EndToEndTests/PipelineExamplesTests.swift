import Foundation
import Testing
import Yams

/// The examples in pipelines/ stay true: their YAML parses and every imagefactory command they
/// run exists with the flags they pass.
struct PipelineExamplesTests {
    static var folder: URL { ImageFactory.packageRoot().appendingPathComponent("pipelines") }

    /// Every string under a key that holds a shell command.
    static func commands(in node: Any, key: String? = nil) -> [String] {
        switch node {
        case let map as [String: Any]: return map.flatMap { commands(in: $0.value, key: $0.key) }
        case let list as [Any]: return list.flatMap { commands(in: $0, key: key) }
        case let text as String: return ["script", "run", "inlineScript", "ExecStart"].contains(key ?? "") ? [text] : []
        default: return []
        }
    }

    /// `imagefactory SUB [args]` invocations in shell text: (subcommand path, flags).
    static func invocations(_ shell: String) -> [(subcommand: [String], flags: [String])] {
        var found: [(subcommand: [String], flags: [String])] = []
        for line in shell.split(whereSeparator: \.isNewline) {
            let tokens = line.split(separator: " ").map(String.init)
            guard let index = tokens.firstIndex(where: { $0 == "imagefactory" || $0.hasSuffix("/imagefactory") }) else { continue }
            var subcommand: [String] = []
            var flags: [String] = []
            var rest = tokens[(index + 1)...].makeIterator()
            while let token = rest.next() {
                if token == "&&" || token == "|" || token == ">" || token == ">>" { break }
                if token.hasPrefix("--") { flags.append(String(token.split(separator: "=")[0])) }
                else if flags.isEmpty && subcommand.count < 2 && token.first?.isLetter == true && !token.contains("/") && !token.contains(".") { subcommand.append(token) }
            }
            found.append((subcommand, flags))
        }
        return found
    }

    static func check(_ invocations: [(subcommand: [String], flags: [String])], file: String) throws {
        #expect(!invocations.isEmpty, "\(file) runs no imagefactory command")
        for invocation in invocations {
            let help = try ImageFactory.run(invocation.subcommand + ["--help"])
            #expect(help.status == 0, "\(file): `imagefactory \(invocation.subcommand.joined(separator: " "))` does not exist: \(help)")
            for flag in invocation.flags {
                #expect(help.stdout.contains(flag), "\(file): `imagefactory \(invocation.subcommand.joined(separator: " "))` has no flag \(flag)")
            }
        }
    }

    @Test(arguments: ["azure-pipelines.yml", "github-actions.yml"])
    func yamlParsesAndCommandsExist(file: String) throws {
        let text = try String(contentsOf: Self.folder.appendingPathComponent(file), encoding: .utf8)
        let document = try #require(try Yams.load(yaml: text) as? [String: Any], "\(file) is not a YAML mapping")
        let shell = Self.commands(in: document)
        #expect(shell.contains { $0.contains("imagefactory validate") }, "\(file) should validate pull requests")
        #expect(shell.contains { $0.contains("imagefactory plan") && $0.contains("--out") }, "\(file) should publish the plan")
        #expect(shell.contains { $0.contains("--junit") }, "\(file) should publish JUnit results")
        try Self.check(shell.flatMap(Self.invocations), file: file)
        if file == "github-actions.yml" {
            let permissions = document["permissions"] as? [String: Any]
            #expect(permissions?["id-token"] as? String == "write", "OIDC login needs id-token: write")
        }
        if file == "azure-pipelines.yml" {
            #expect(text.contains("PublishTestResults@2") && text.contains("schedules:"))
        }
    }

    @Test func cronWrapperAndSystemdTimer() throws {
        let cron = try String(contentsOf: Self.folder.appendingPathComponent("cron.sh"), encoding: .utf8)
        #expect(cron.contains("flock"), "the cron wrapper must be lock-aware")
        try Self.check(Self.invocations(cron), file: "cron.sh")
        let syntax = try Subprocess.run(URL(fileURLWithPath: "/bin/bash"), ["-n", Self.folder.appendingPathComponent("cron.sh").path], in: Self.folder)
        #expect(syntax.status == 0, "\(syntax)")
        let timer = try String(contentsOf: Self.folder.appendingPathComponent("imagefactory.timer"), encoding: .utf8)
        #expect(timer.contains("OnCalendar="))
        let service = try String(contentsOf: Self.folder.appendingPathComponent("imagefactory.service"), encoding: .utf8)
        #expect(service.contains("ExecStart=") && service.contains("cron.sh"))
    }
}
