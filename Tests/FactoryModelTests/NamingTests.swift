import FactoryModel
import Foundation
import Testing

@Suite("VM and image naming")
struct NamingTests {
    @Test("the derived VM name follows the original's rules", arguments: [
        ("Win2016/Datacenter.json", "Datacenter"),
        ("Win2016/SQLServer 2016 Express.json", "SQLServer2016"),  // 20 characters: cut to 13
        ("Win2012R2/VS2015 Enterprise with Azure SDK.json", "VS2015Enterpr"),
        ("my_image.v2.json", "myimagev2"),  // '_', '.' and spaces removed
        ("2016.json", "vm2016"),  // all digits: 'vm' in front
        ("Exactly15Chars1.json", "Exactly15Chars1"),  // 15 is allowed
        ("Sixteen16Chars16.json", "Sixteen16Char"),  // 16 is not: cut to 13
        ("Ubuntu-22.04.json", "Ubuntu-2204"),
        ("-Edge-.json", "Edge"),
        ("Café Déjà.json", "CafDj"),  // characters Azure refuses are dropped
        ("___.json", "vm"),
        ("Core", "Core"),  // no .json
        ("Folder.With.Dots/Image.JSON", "Image"),
    ])
    func baseVMName(path: String, expected: String) {
        let name = Naming.baseVMName(forTemplate: path)
        #expect(name == expected)
        #expect(name.count <= Naming.maxVMNameLength)
    }

    @Test("a name cut to 13 characters never ends with a hyphen")
    func noTrailingHyphenAfterCut() {
        let name = Naming.baseVMName(forTemplate: "Windows-2019-Datacenter.json")
        #expect(name == "Windows-2019")
        #expect(Naming.vmNameProblem(name, osType: .windows) == nil)
    }

    @Test("colliding derived names: the first in path order keeps the base name, the next gets 12 characters and 3 digits")
    func collisions() throws {
        let paths = ["Server 2022/Datacenter.json", "Server 2019/Datacenter.json", "A/SQLServer 2016 Express.json", "B/SQLServer 2016 Express.json"]
        let names = Naming.assignVMNames(templatePaths: paths)
        #expect(names["Server 2019/Datacenter.json"] == "Datacenter")
        let second = try #require(names["Server 2022/Datacenter.json"])
        #expect(second.count == 13)
        #expect(second.hasPrefix("Datacenter"))
        #expect(second.dropFirst(10).allSatisfy { $0.isNumber })
        #expect(names["A/SQLServer 2016 Express.json"] == "SQLServer2016")
        let long = try #require(names["B/SQLServer 2016 Express.json"])
        #expect(long.count == 15)
        #expect(long.hasPrefix("SQLServer201"))
        #expect(long.dropFirst(12).allSatisfy { $0.isNumber })
    }

    @Test("the collision suffix is deterministic: same names whatever the input order, on every call")
    func deterministic() {
        let paths = (1...30).map { "Folder \($0)/Datacenter.json" }
        let names = Naming.assignVMNames(templatePaths: paths)
        #expect(Naming.assignVMNames(templatePaths: paths.reversed()) == names)
        #expect(Naming.assignVMNames(templatePaths: paths.shuffled()) == names)
        #expect(Naming.assignVMNames(templatePaths: paths) == names)
        #expect(Set(names.values).count == 30)
    }

    @Test("many collisions still give unique valid names, ignoring case")
    func manyCollisions() {
        let paths = (1...300).map { "F\($0)/\($0 % 2 == 0 ? "datacenter" : "Datacenter").json" }
        let names = Naming.assignVMNames(templatePaths: paths)
        #expect(names.count == 300)
        #expect(Set(names.values.map { $0.lowercased() }).count == 300)
        #expect(names.values.allSatisfy { $0.count <= 15 && Naming.vmNameProblem($0, osType: .windows) == nil })
    }

    @Test("reserved names are avoided, ignoring case")
    func reserved() throws {
        let names = Naming.assignVMNames(templatePaths: ["Win2016/Datacenter.json"], reserved: ["DATACENTER"])
        let name = try #require(names["Win2016/Datacenter.json"])
        #expect(name.lowercased() != "datacenter")
        #expect(name.hasPrefix("Datacenter"))
    }

    @Test("Azure's VM name rules", arguments: [
        ("Datacenter", OSType.windows, nil as String?),
        ("build-vm-01", .windows, nil),
        ("Exactly15Chars1", .windows, nil),
        ("Sixteen16Chars16", .windows, "is 16 characters long; Windows VM names are at most 15"),
        ("Sixteen16Chars16", .linux, nil),
        (String(repeating: "a", count: 65), .linux, "is 65 characters long; Linux VM names are at most 64"),
        ("", .windows, "is empty"),
        ("2016", .windows, "cannot be all digits"),
        ("vm_01", .windows, "may contain only letters, digits and hyphens"),
        ("vm 01", .windows, "may contain only letters, digits and hyphens"),
        ("-vm", .windows, "cannot start or end with a hyphen"),
        ("vm-", .linux, "cannot start or end with a hyphen"),
    ])
    func vmNameRules(name: String, os: OSType, problem: String?) {
        #expect(Naming.vmNameProblem(name, osType: os) == problem)
    }

    @Test("the image base name joins folders with '_', '.' to '_', spaces to '-'", arguments: [
        ("Win2016/Datacenter.json", "Win2016_Datacenter"),
        ("Win2016/SQLServer 2016 Express.json", "Win2016_SQLServer-2016-Express"),
        ("Win2012R2/VS2015 Enterprise with Azure SDK.json", "Win2012R2_VS2015-Enterprise-with-Azure-SDK"),
        ("Ubuntu 22.04 LTS.json", "Ubuntu-22_04-LTS"),
        ("Linux/Data Science/Ubuntu 20.04 DSVM.json", "Linux_Data-Science_Ubuntu-20_04-DSVM"),
        ("Windows/Server 2019/Datacenter with IIS.json", "Windows_Server-2019_Datacenter-with-IIS"),
        ("Odd/C#+(x).json", "Odd_C---x-"),
        ("Upper.JSON", "Upper"),
    ])
    func imageBaseName(path: String, expected: String) {
        #expect(Naming.imageBaseName(forTemplate: path) == expected)
    }

    private static func utcDate(_ year: Int, _ month: Int, _ day: Int, hour: Int = 12) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: DateComponents(year: year, month: month, day: day, hour: hour))!
    }

    @Test("the date suffix is MMM-d-yyyy in English, in UTC")
    func dateSuffix() {
        #expect(Naming.dateSuffix(Self.utcDate(2026, 11, 22, hour: 4)) == "Nov-22-2026")
        #expect(Naming.dateSuffix(Self.utcDate(2027, 1, 5)) == "Jan-5-2027")
        #expect(Naming.dateSuffix(Self.utcDate(2024, 2, 29, hour: 23)) == "Feb-29-2024")
        #expect(Naming.dateSuffix(Self.utcDate(2026, 12, 31, hour: 0)) == "Dec-31-2026")
    }

    @Test("a dated image name gets A, B, ... when the day's name is taken, ignoring case")
    func datedImageNames() {
        let day = Self.utcDate(2026, 11, 22)
        let base = "Win2016_Datacenter"
        #expect(Naming.datedImageName(base: base, date: day, taken: []) == "Win2016_Datacenter-Nov-22-2026")
        #expect(Naming.datedImageName(base: base, date: day, taken: ["Win2016_Datacenter-Nov-21-2026"]) == "Win2016_Datacenter-Nov-22-2026")
        #expect(Naming.datedImageName(base: base, date: day, taken: ["Win2016_Datacenter-Nov-22-2026"]) == "Win2016_Datacenter-Nov-22-2026A")
        #expect(Naming.datedImageName(base: base, date: day, taken: ["win2016_datacenter-nov-22-2026", "WIN2016_DATACENTER-NOV-22-2026A"])
                    == "Win2016_Datacenter-Nov-22-2026B")
    }

    @Test("after Z comes ZA, then ZB")
    func datedImageNamesPastZ() {
        let day = Self.utcDate(2026, 11, 22)
        let plain = "Img-Nov-22-2026"
        var taken: Set<String> = [plain]
        for letter in UnicodeScalar("A").value...UnicodeScalar("Z").value {
            taken.insert(plain + String(UnicodeScalar(letter)!))
        }
        #expect(Naming.datedImageName(base: "Img", date: day, taken: taken) == plain + "ZA")
        taken.insert(plain + "ZA")
        #expect(Naming.datedImageName(base: "Img", date: day, taken: taken) == plain + "ZB")
    }
}

@Suite("Git blob identity")
struct GitBlobHashTests {
    @Test("blob SHAs are computed the way git computes them", arguments: [
        ("", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"),
        ("hello\n", "ce013625030ba8dba906f756967f9e9ca394464a"),
    ])
    func knownHashes(text: String, sha: String) {
        #expect(GitBlobHash.sha(of: Data(text.utf8)) == sha)
        #expect(ConfigFile(path: "x", data: Data(text.utf8)).blobSha == sha)
    }

    @Test("an in-memory source hashes its files and keeps its commit")
    func inMemorySource() throws {
        let source = InMemoryConfigSource(files: ["Labs.json": "hello\n", "GoldenImages/A.json": ""])
        let snapshot = try source.load()
        #expect(snapshot.commit == "0000000000000000000000000000000000000000")
        #expect(snapshot.files.map(\.path) == ["GoldenImages/A.json", "Labs.json"])
        #expect(snapshot.files.map(\.blobSha) == ["e69de29bb2d1d6434b8b29ae775ad8c2e48c5391", "ce013625030ba8dba906f756967f9e9ca394464a"])
        #expect(snapshot.displayPath("Labs.json") == "Configuration/Labs.json")
    }
}
