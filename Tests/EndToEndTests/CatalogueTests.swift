import Foundation
import Testing

/// The image catalogue a lab owner reads: one self-contained page with every golden image.
struct CatalogueTests {
    @Test func catalogueListsEveryImageAndLoadsNothingFromTheNetwork() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let env = ["IMAGEFACTORY_LOCAL_LATENCY": "instant", "IMAGEFACTORY_LOCK_SECONDS": "1"]
            #expect(try ImageFactory.run(["run", "--repo", repo.path], environment: env).status == 0)
            let file = repo.url("out/catalogue.html")
            let result = try ImageFactory.run(["report", "--html", file.path, "--repo", repo.path], environment: env)
            #expect(result.status == 0, "\(result)")
            let html = try String(contentsOf: file, encoding: .utf8)
            #expect(html.hasPrefix("<!DOCTYPE html>"))
            for forbidden in ["<script", "<link", "src=\"http", "href=\"http", "url(http", "@import"] {
                #expect(!html.contains(forbidden), "the page must be self-contained: found \(forbidden)")
            }
            // Every golden image, its OS and capture mode, base image, artifacts and where it is delivered.
            for name in ["Windows_Server-2019_Datacenter", "Linux_Ubuntu-22_04-LTS", "Windows_Developer_SQL-Server-2019-Developer"] {
                #expect(html.contains("<h2>\(name)</h2>"), "\(name) missing")
            }
            #expect(html.components(separatedBy: "<section class=\"card\"").count - 1 == repo.sampleTemplatePaths.count)
            #expect(html.contains("specialized") && html.contains("generalized"))
            #expect(html.contains("MicrosoftWindowsServer") && html.contains("windows-sysprep") && html.contains("linux-deprovision"))
            #expect(html.contains("<td>QALab</td><td>eastus</td><td>Windows_Server-2019_Datacenter-"), "the version each lab holds")
            #expect(!html.contains("not delivered yet"), "after a full run every lab has its images")
            // The overview at the top: one row per image, linked to its card, with the labs holding the latest.
            let overview = try #require(html.components(separatedBy: "<table class=\"overview\"").dropFirst().first?.components(separatedBy: "</table>").first)
            #expect(overview.components(separatedBy: "<tr><td><a href=\"#").count - 1 == repo.sampleTemplatePaths.count)
            #expect(overview.contains("<td>4 of 4</td>") || overview.contains("<td>3 of 3</td>") || overview.contains("<td>2 of 2</td>"), "\(overview)")
            #expect(!overview.contains("not built yet"))
            let report = try ImageFactory.run(["report", "--html", "/proc/x.html", "--repo", repo.path], environment: env)
            #expect(report.status == 2)
            #expect(report.stderr.contains("/proc/x.html"), "the error names the path: \(report.stderr)")
        }
    }
}
