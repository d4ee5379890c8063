import FactoryModel
import Foundation
import Testing

@Suite("Text encodings and JSON errors")
struct JSONTextTests {
    @Test("UTF-8 with and without BOM and UTF-16 with BOM decode to the same text")
    func decodeText() throws {
        let text = "{ \"notes\": \"Café – 日本語 😀\" }"
        #expect(JSONText.decodeText(Data(text.utf8)) == text)
        #expect(JSONText.decodeText(text.utf8WithBOM) == text)
        #expect(JSONText.decodeText(text.utf16LEWithBOM) == text)
        #expect(JSONText.decodeText(text.utf16BEWithBOM) == text)
        #expect(JSONText.decodeText(Data()) == "")
    }

    @Test("bytes that are neither UTF-8 nor UTF-16 with BOM are refused")
    func undecodable() {
        #expect(JSONText.decodeText(Data([0x7B, 0xC3, 0x28, 0x7D])) == nil)
    }

    @Test("a missing comma is reported at the line and column of the next token")
    func parseErrorPosition() throws {
        let text = "{\n  \"Labs\": [\n    { \"a\": 1\n      \"b\": 2 }\n  ]\n}\n"
        let error = try #require(throws: JSONText.ParseError.self) { try JSONText.parse(text) }
        #expect(error.line == 4)
        #expect(error.column == 7)
        #expect(!error.message.contains("around character"))
        #expect(!error.message.isEmpty)
    }

    @Test("columns count characters, not UTF-8 bytes")
    func parseErrorColumnAfterNonASCII() throws {
        let error = try #require(throws: JSONText.ParseError.self) { try JSONText.parse("{\"n\": \"ééé😀\", \"x\": }") }
        #expect(error.line == 1)
        #expect(error.column == 20)
    }

    @Test("an unexpected end of file points at the end")
    func parseErrorAtEnd() throws {
        let error = try #require(throws: JSONText.ParseError.self) { try JSONText.parse("{\n  \"Labs\": [\n") }
        #expect(error.line == 3)
        #expect(error.column == 1)
    }

    @Test("lineAndColumn is 1-based")
    func lineAndColumn() {
        let data = Data("ab\ncd\n".utf8)
        #expect(JSONText.lineAndColumn(ofByteOffset: 0, in: data) == (1, 1))
        #expect(JSONText.lineAndColumn(ofByteOffset: 1, in: data) == (1, 2))
        #expect(JSONText.lineAndColumn(ofByteOffset: 3, in: data) == (2, 1))
        #expect(JSONText.lineAndColumn(ofByteOffset: 4, in: data) == (2, 2))
    }

    @Test("LineIndex finds the line of the first match after an offset")
    func lineIndex() throws {
        let index = LineIndex("{\n \"a\": \"x\",\n \"b\": \"x\"\n}")
        #expect(index.locate("\"x\"")?.line == 2)
        let first = try #require(index.locate("\"x\""))
        #expect(index.locate("\"x\"", from: first.end)?.line == 3)
        #expect(index.locate("\"zzz\"") == nil)
        #expect(index.line(ofOffset: 0) == 1)
    }

    @Test("object keys are looked up in any case, exact case first")
    func caseInsensitiveValue() {
        let object: [String: Any] = ["LabName": "a", "labname": "b", "ImagePaths": [1]]
        #expect(JSONText.value(object, "LabName") as? String == "a")
        #expect(JSONText.value(object, "labname") as? String == "b")
        #expect(JSONText.value(object, "IMAGEPATHS") as? [Int] == [1])
        #expect(JSONText.value(object, "Missing") == nil)
    }
}

@Suite("Configuration files in the encodings Windows tools write")
struct ConfigurationEncodingTests {
    static let labs = Fixture.labs(imagePaths: ["Win2016"])
    static let template = Fixture.template(notes: "Windows Server 2016 – Datacenter ✓")

    private func load(labs: Data, template: Data) -> FactoryConfiguration {
        var fixture = ConfigFixture()
        fixture.files["Labs.json"] = labs
        fixture.files["GoldenImages/Win2016/Datacenter.json"] = template
        return ConfigurationLoader.load(fixture.snapshot)
    }

    @Test("UTF-8 with BOM is read like plain UTF-8")
    func utf8BOM() throws {
        let config = load(labs: Self.labs.utf8WithBOM, template: Self.template.utf8WithBOM)
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(try #require(config.labs.first).images == ["Win2016/Datacenter.json"])
        #expect(try #require(config.templates.first).description == "Windows Server 2016 – Datacenter ✓")
    }

    @Test("UTF-16 LE with BOM (Windows PowerShell's Out-File) is read")
    func utf16LittleEndian() throws {
        let config = load(labs: Self.labs.utf16LEWithBOM, template: Self.template.utf16LEWithBOM)
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(try #require(config.labs.first).labName == "DevLab")
        let template = try #require(config.templates.first)
        #expect(template.description == "Windows Server 2016 – Datacenter ✓")
        // Identity is the bytes as stored, so the blob SHA is the UTF-16 file's.
        #expect(template.blobSha == GitBlobHash.sha(of: Self.template.utf16LEWithBOM))
        #expect(template.blobSha != GitBlobHash.sha(of: Data(Self.template.utf8)))
    }

    @Test("UTF-16 BE with BOM is read")
    func utf16BigEndian() throws {
        let config = load(labs: Self.labs.utf16BEWithBOM, template: Data(Self.template.utf8))
        #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
        #expect(config.labs.count == 1)
    }

    @Test("a file that is not text is an error naming it")
    func notText() throws {
        let config = load(labs: Data([0x7B, 0xC3, 0x28, 0x7D]), template: Data(Self.template.utf8))
        let error = try #require(config.diagnostics.errors.first)
        #expect(config.diagnostics.errors.count == 1)
        #expect(error.message == "The file is not valid UTF-8 or UTF-16 text.")
        #expect(error.file == "Configuration/Labs.json")
    }

    @Test("invalid JSON in Labs.json reports the file, line and column")
    func invalidLabsJSON() throws {
        let broken = """
            {
              "Labs": [
                {
                  "SubscriptionId": "s"
                  "LabName": "DevLab",
                  "ImagePaths": ["Win2016"]
                }
              ]
            }
            """
        let config = load(labs: Data(broken.utf8), template: Data(Self.template.utf8))
        let error = try #require(config.diagnostics.errors.first)
        #expect(config.diagnostics.errors.count == 1)
        #expect(error.message.hasPrefix("Invalid JSON: "))
        #expect(error.file == "Configuration/Labs.json")
        #expect(error.line == 5)
        #expect(error.column == 7)
        #expect(error.location == "Configuration/Labs.json:5:7")
        #expect(error.hint != nil)
        #expect(config.labs.isEmpty)
    }

    @Test("invalid JSON in a UTF-16 file is located in characters of the decoded text")
    func invalidJSONInUTF16() throws {
        let broken = "{\n  \"Labs\": [ { \"LabName\": \"Dév\" \"x\": 1 } ]\n}\n"
        let config = load(labs: broken.utf16LEWithBOM, template: Data(Self.template.utf8))
        let error = try #require(config.diagnostics.errors.first)
        #expect(error.message.hasPrefix("Invalid JSON"))
        #expect(error.line == 2)
        #expect(error.column == 32)
    }

    @Test("Windows line endings (CRLF) change neither the result nor the reported lines and columns")
    func crlf() throws {
        var fixture = ConfigFixture()
        for (path, text) in AzureSampleConfiguration.files {
            fixture[path] = text.replacingOccurrences(of: "\n", with: "\r\n")
        }
        let config = try fixture.load()
        #expect(config.diagnostics.errors.isEmpty, "\(config.diagnostics)")
        #expect(config.diagnostics.map(\.line) == [6], "only the placeholder names' warning, at the same line: \(config.diagnostics)")
        #expect(config.labs.first?.line == 6)

        fixture["Labs.json"] = "{\r\n  \"Labs\": [\r\n    { \"LabName\": \"x\" \"ImagePaths\": [] }\r\n  ]\r\n}\r\n"
        let broken = try fixture.load()
        let error = try #require(broken.diagnostics.errors.first)
        #expect(error.line == 3)
        #expect(error.column == 22)
    }

    @Test("invalid JSON in several files is reported for each file")
    func invalidJSONEverywhere() throws {
        var fixture = ConfigFixture()
        fixture["Labs.json"] = "{ \"Labs\": [ }"
        fixture["GoldenImages/A.json"] = "{\n  \"resources\": [\n    { \"type\": }\n  ]\n}"
        fixture["GoldenImages/B.json"] = Fixture.template()
        let config = try fixture.load()
        let errors = config.diagnostics.errors
        #expect(errors.count == 2, "\(errors)")
        let template = try #require(errors.first { $0.file == "Configuration/GoldenImages/A.json" })
        #expect(template.line == 3)
        #expect(template.column == 15)
        #expect(errors.contains { $0.file == "Configuration/Labs.json" && $0.line == 1 })
        // The valid template is still loaded (and is unused, as Labs.json is broken).
        #expect(config.templates.map(\.path) == ["B.json"])
    }
}

/// ARM templates may carry comments; they are read like the service reads them, positions intact.
struct JSONCommentsTests {
    @Test func commentsOutsideStringsAreIgnored() throws {
        let text = """
            {
              // the lab VM
              "resources": [ /* one */ {"type": "Microsoft.DevTestLab/labs/virtualmachines", "url": "https://example.invalid/a//b"} ]
            }
            """
        let object = try #require(try JSONText.parse(text) as? [String: Any])
        let resources = try #require(object["resources"] as? [[String: Any]])
        #expect(resources.first?["url"] as? String == "https://example.invalid/a//b")
    }

    @Test func errorsAfterCommentsKeepTheirPosition() {
        let text = "{\n  // note\n  \"a\": 1,\n  \"b\": ,\n}"
        do {
            _ = try JSONText.parse(text)
            Issue.record("invalid JSON was accepted")
        } catch {
            #expect(error.line == 4, "\(error)")
        }
    }
}
