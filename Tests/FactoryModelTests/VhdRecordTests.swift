import Foundation
import Testing
@testable import FactoryModel

/// The VHD record format: the original PowerShell factory's records still read, ours round-trip.
struct VhdRecordTests {
    /// Records as the original wrote them, with the machine's culture in the timestamp.
    @Test(arguments: [
        ("11/22/2026 4:50:00 AM", "2026-11-22T04:50:00Z"),
        ("11/22/2026 4:50:00 PM", "2026-11-22T16:50:00Z"),
        ("22.11.2026 04:50:00", "2026-11-22T04:50:00Z"),
        ("2026-11-22 04:50:00", "2026-11-22T04:50:00Z"),
        ("/Date(1795323000000)/", "2026-11-22T04:50:00Z"),
        ("2026-11-22T04:50:00Z", "2026-11-22T04:50:00Z"),
    ])
    func originalRecordsDecode(timestamp: String, expected: String) throws {
        let json = """
            {"imageName":"Win2016_Datacenter-Nov-22-2026","imagePath":"Win2016\\\\Datacenter.json","description":"Windows Server 2016 Datacenter",
             "osType":"Windows","vhdFileName":"3f1c2a9e-7a4d-4b4f-9a51-0d7c1a2b3c4d.vhd","timestamp":"\(timestamp)"}
            """
        let record = try VhdRecord.decode(Data(json.utf8))
        #expect(record.formatVersion == nil)
        #expect(record.imagePath == "Win2016/Datacenter.json")
        #expect(record.osType == .windows)
        #expect(record.isGeneralized, "the original always sysprepped")
        #expect(record.timestamp == (try Date(expected, strategy: .iso8601)))
        #expect(record.commit == nil && record.md5 == nil)
    }

    @Test func originalRecordWithUTF16BOMDecodes() throws {
        let json = #"{"imageName":"A","imagePath":"Linux/Ubuntu.json","description":"","osType":"linux","vhdFileName":"a.vhd","timestamp":"1/2/2026 3:04:05 AM"}"#
        var data = Data([0xFF, 0xFE])
        data.append(json.data(using: .utf16LittleEndian)!)
        let record = try VhdRecord.decode(data)
        #expect(record.osType == .linux)
        #expect(record.timestamp == (try Date("2026-01-02T03:04:05Z", strategy: .iso8601)))
    }

    @Test func newRecordsRoundTripWithProvenance() throws {
        let record = VhdRecord(imageName: "Linux_Ubuntu-Nov-22-2026", imagePath: "Linux/Ubuntu.json", description: "Ubuntu", osType: .linux,
                               vhdFileName: "Linux_Ubuntu-Nov-22-2026.vhd", timestamp: Date(timeIntervalSince1970: 1_795_323_000.25),
                               osState: .specialized, commit: String(repeating: "a", count: 40), templateBlobSha: String(repeating: "b", count: 40),
                               sizeBytes: 1 << 30, md5: "1B2M2Y8AsgTpgAmY7PhCfg==", runId: "run-1")
        let data = try record.encoded()
        let text = String(decoding: data, as: UTF8.self)
        for key in ["imageName", "imagePath", "description", "osType", "vhdFileName", "timestamp", "osState", "commit", "templateBlobSha", "sizeBytes", "md5", "formatVersion"] {
            #expect(text.contains("\"\(key)\""), "missing \(key)")
        }
        let decoded = try VhdRecord.decode(data)
        #expect(decoded == record)
        #expect(!decoded.isGeneralized)
    }

    @Test func newerFormatVersionIsAClearError() throws {
        let json = #"{"formatVersion":9,"imageName":"A","imagePath":"x.json","description":"","osType":"Linux","vhdFileName":"a.vhd","timestamp":"2026-01-01T00:00:00Z"}"#
        #expect(throws: DecodingError.self) { try VhdRecord.decode(Data(json.utf8)) }
    }

    @Test func unreadableTimestampIsRejected() {
        let json = #"{"imageName":"A","imagePath":"x.json","description":"","osType":"Linux","vhdFileName":"a.vhd","timestamp":"yesterday"}"#
        #expect(throws: DecodingError.self) { try VhdRecord.decode(Data(json.utf8)) }
    }
}

/// More than a thousand templates sharing a 12-character stem still get distinct names within 15 characters.
struct VMNameExhaustionTests {
    @Test func thousandsOfCollidingNamesTerminate() {
        let paths = (0..<1_500).map { "Folder \($0)/Datacenter Edition.json" }
        let names = Naming.assignVMNames(templatePaths: paths)
        #expect(names.count == 1_500)
        #expect(Set(names.values.map { $0.lowercased() }).count == 1_500)
        #expect(names.values.allSatisfy { $0.count <= 15 })
    }
}
