import FactoryModel
import Foundation
import GRDB

// The local cloud's labs provider.
extension LocalCloud {
    /// Creates a lab (the local cloud's stand-in for the portal or a lab ARM template). Idempotent.
    @discardableResult
    public func createLab(_ id: LabID, location: String) async throws -> Lab {
        if let error = AzureNameRules.subscriptionError(id.subscriptionId) ?? AzureNameRules.resourceGroupError(id.resourceGroup) { throw error }
        guard !id.name.isEmpty, id.name.count <= 50,
              id.name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_") }) else {
            throw CloudError(status: 400, code: "InvalidResourceName",
                             message: "The lab name '\(id.name)' is invalid: use 1 to 50 letters, digits, '-' or '_'.")
        }
        let account = StorageAccountID(subscriptionId: id.subscriptionId, resourceGroup: id.resourceGroup, name: LocalCloud.storageAccountName(for: id))
        return try await perform("createLab", kind: .deploy, write: true, subscription: id.subscriptionId, lab: id.name, resource: id.resourceId) {
            try await self.db.write { db in
                if let existing = try db.record("lab", LocalCloud.labKey(id), as: LabRecord.self) {
                    return Lab(id: existing.id, location: existing.location, storageAccount: existing.storageAccount)
                }
                let record = LabRecord(id: id, location: Location.normalize(location), storageAccount: account, createdAt: self.clock.now())
                try db.save("lab", LocalCloud.labKey(id), parent: id.subscriptionId.lowercased(), record)
                return Lab(id: id, location: record.location, storageAccount: account)
            }
        }
    }

    public func listLabs(subscriptionId: String) async throws -> [Lab] {
        try await perform("listLabs", kind: .read, write: false, subscription: subscriptionId, lab: nil, resource: "/subscriptions/\(subscriptionId)") {
            try await self.db.read { db in
                try db.records("lab", parent: subscriptionId.lowercased(), as: LabRecord.self)
                    .map { Lab(id: $0.id, location: $0.location, storageAccount: $0.storageAccount) }
            }
        }
    }

    public func getLab(_ id: LabID) async throws -> Lab {
        try await perform("getLab", kind: .read, write: false, subscription: id.subscriptionId, lab: id.name, resource: id.resourceId) {
            try await self.db.read { db in try self.lab(db, id) }
        }
    }

    func lab(_ db: Database, _ id: LabID) throws -> Lab {
        guard let r = try db.record("lab", LocalCloud.labKey(id), as: LabRecord.self) else {
            throw LocalCloud.resourceNotFound("Microsoft.DevTestLab/labs/\(id.name)", resourceGroup: id.resourceGroup)
        }
        return Lab(id: r.id, location: r.location, storageAccount: r.storageAccount)
    }
}
