import FactoryModel
import Foundation
import GRDB

/// What the whole local cloud holds, across subscriptions: for `imagefactory local show` and tests.
/// Azure has no such call (a caller there lists labs per subscription); the local cloud can, because
/// it is one state directory.
extension LocalCloud {
    /// Every lab in the local cloud, in every subscription, ordered by subscription, resource group and name.
    public func allLabs() async throws -> [Lab] {
        try await perform("allLabs", kind: .read, write: false, subscription: nil, lab: nil, resource: "/subscriptions") {
            try await self.db.read { db in
                try db.allRecords("lab", as: LabRecord.self)
                    .map { Lab(id: $0.id, location: $0.location, storageAccount: $0.storageAccount) }
            }
        }
    }
}

extension LocalCloud {
    /// Every gallery in the local cloud, in every subscription (for `local show`).
    public func allGalleries() async throws -> [Gallery] {
        try await perform("allGalleries", kind: .read, write: false, subscription: nil, lab: nil, resource: "/subscriptions/galleries") {
            try await self.db.read { db in
                let now = self.clock.now()
                return try db.allRecords("gallery", as: GalleryRecord.self).map { record in
                    var gallery = record.gallery
                    gallery.provisioningState = now < record.readyAt ? "Creating" : "Succeeded"
                    return gallery
                }
            }
        }
    }
}
