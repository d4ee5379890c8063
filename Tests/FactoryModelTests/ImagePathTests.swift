import FactoryModel
import Foundation
import Testing

@Suite("ImagePath rules")
struct ImagePathTests {
    @Test("normalize turns backslashes into slashes and drops empty, leading, trailing and '.' segments",
          arguments: [
              ("Win2016", "Win2016"),
              ("Win2016\\Datacenter.json", "Win2016/Datacenter.json"),
              ("\\Win2016\\", "Win2016"),
              ("/Win2016//Datacenter.json/", "Win2016/Datacenter.json"),
              ("./Win2016/./Datacenter.json", "Win2016/Datacenter.json"),
              ("Windows\\Server 2019", "Windows/Server 2019"),
              ("", ""),
              ("/", ""),
          ])
    func normalize(raw: String, expected: String) {
        #expect(ImagePath.normalize(raw) == expected)
    }

    @Test("a folder covers the templates under it by whole segments, never a sibling that shares a prefix")
    func coversBySegments() {
        #expect(ImagePath.covers("Win2016", "Win2016/Datacenter.json"))
        #expect(ImagePath.covers("Win2016", "Win2016/SQL/Express.json"))
        #expect(ImagePath.covers("Win2016/Datacenter.json", "Win2016/Datacenter.json"))
        #expect(!ImagePath.covers("Win2016", "Win2016R2/Core.json"))
        #expect(!ImagePath.covers("Win2016/Data", "Win2016/Datacenter.json"))
        #expect(!ImagePath.covers("Win2016/Datacenter.json", "Win2016"))
    }

    @Test("backslashes and slashes are the same separator when covering")
    func coversWithBackslashes() {
        #expect(ImagePath.covers("Win2016\\", "Win2016/Datacenter.json"))
        #expect(ImagePath.covers("Windows\\Server 2019", "Windows/Server 2019/Datacenter.json"))
        #expect(ImagePath.covers("Win2016/Datacenter.json", "Win2016\\Datacenter.json"))
        #expect(!ImagePath.covers("Win2016\\", "Win2016R2\\Core.json"))
    }

    @Test("covering is case-sensitive unless asked to ignore case")
    func coversCase() {
        #expect(!ImagePath.covers("win2016", "Win2016/Datacenter.json"))
        #expect(ImagePath.covers("win2016", "Win2016/Datacenter.json", ignoringCase: true))
        #expect(!ImagePath.covers("win2016", "Win2016R2/Core.json", ignoringCase: true))
    }

    @Test("an empty ImagePath covers everything")
    func emptyCoversAll() {
        #expect(ImagePath.covers("", "Win2016/Datacenter.json"))
        #expect(ImagePath.covers("/", "Anything.json"))
    }
}

@Suite("ImagePathIndex resolution")
struct ImagePathIndexTests {
    let index = ImagePathIndex(templatePaths: [
        "Win2016R2/Core.json",
        "Win2016/Datacenter.json",
        "Win2016/SQL/Express 2016.json",
        "Linux/Ubuntu 22.04 LTS.json",
        "Root.json",
    ])

    @Test("a folder resolves to every template below it, sorted, and never to Win2016R2")
    func folder() throws {
        let resolution = try #require(index.resolve("Win2016"))
        #expect(resolution.templates == ["Win2016/Datacenter.json", "Win2016/SQL/Express 2016.json"])
        #expect(resolution.caseCorrectedPath == nil)
    }

    @Test("a file resolves to itself; a root file too")
    func file() throws {
        #expect(try #require(index.resolve("Win2016/Datacenter.json")).templates == ["Win2016/Datacenter.json"])
        #expect(try #require(index.resolve("Root.json")).templates == ["Root.json"])
        #expect(try #require(index.resolve("Win2016R2")).templates == ["Win2016R2/Core.json"])
    }

    @Test("backslash paths resolve like slash paths")
    func backslashes() throws {
        let resolution = try #require(index.resolve("Win2016\\SQL\\Express 2016.json"))
        #expect(resolution.templates == ["Win2016/SQL/Express 2016.json"])
        #expect(resolution.caseCorrectedPath == nil)
    }

    @Test("a partial segment or a missing .json matches nothing")
    func partialSegments() {
        #expect(index.resolve("Win") == nil)
        #expect(index.resolve("Win2016/Data") == nil)
        #expect(index.resolve("Win2016/Datacenter") == nil)
        #expect(index.resolve("Win2012") == nil)
    }

    @Test("a case-only match resolves and reports the real path")
    func caseOnly() throws {
        let resolution = try #require(index.resolve("win2016\\sql"))
        #expect(resolution.templates == ["Win2016/SQL/Express 2016.json"])
        #expect(resolution.caseCorrectedPath == "Win2016/SQL")
    }

    @Test("exact case wins over a folder that differs only in case")
    func exactCaseWins() throws {
        let index = ImagePathIndex(templatePaths: ["Win2016/Datacenter.json", "win2016/Core.json"])
        let lower = try #require(index.resolve("win2016"))
        #expect(lower.templates == ["win2016/Core.json"])
        #expect(lower.caseCorrectedPath == nil)
        let upper = try #require(index.resolve("Win2016"))
        #expect(upper.templates == ["Win2016/Datacenter.json"])
        #expect(upper.caseCorrectedPath == nil)
    }

    @Test("the closest existing path is offered for a typo, and nothing for an unrelated path")
    func closest() {
        #expect(index.closest(to: "Win2061") == "Win2016")
        #expect(index.closest(to: "Win2016/Datacentre.json") == "Win2016/Datacenter.json")
        #expect(index.closest(to: "Linux\\Ubuntu 22.04.json") == "Linux/Ubuntu 22.04 LTS.json")
        #expect(index.closest(to: "Completely/Unrelated/Thing/Here.json") == nil)
    }
}

@Suite("TargetLab subscriptions")
struct TargetLabTests {
    @Test("a lab subscribes by whole segments and ignoring case, as Azure tags compare")
    func subscribes() {
        let lab = TargetLab(subscriptionId: "s", resourceGroup: nil, labName: "Lab", imagePaths: ["Win2016", "Linux/Ubuntu.json"])
        #expect(lab.subscribes(to: "Win2016/Datacenter.json"))
        #expect(lab.subscribes(to: "win2016/datacenter.json"))
        #expect(lab.subscribes(to: "Linux/Ubuntu.json"))
        #expect(!lab.subscribes(to: "Win2016R2/Core.json"))
        #expect(!lab.subscribes(to: "Linux/Debian.json"))
    }

    @Test("lab identity ignores case of subscription and name")
    func key() {
        let a = TargetLab(subscriptionId: "AAAA", resourceGroup: "rg1", labName: "DevLab", imagePaths: [])
        let b = TargetLab(subscriptionId: "aaaa", resourceGroup: "rg2", labName: "devlab", imagePaths: [])
        let c = TargetLab(subscriptionId: "bbbb", resourceGroup: "rg1", labName: "DevLab", imagePaths: [])
        #expect(a.key == b.key)
        #expect(a.key != c.key)
    }
}
