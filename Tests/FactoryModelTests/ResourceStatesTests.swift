import FactoryModel
import Foundation
import Testing

@Suite("Typed resource states")
struct ResourceStatesTests {
    @Test("only Succeeded, Failed and Canceled end an operation; Accepted, Updating and unknown states keep a caller waiting")
    func terminalStates() {
        #expect(ProvisioningState("Succeeded").isTerminal)
        #expect(ProvisioningState("failed").isTerminal && ProvisioningState("failed").hasFailed)
        #expect(ProvisioningState("Canceled").hasFailed && ProvisioningState("Cancelled") == .canceled)
        for waiting in ["Accepted", "Creating", "Updating", "Running", "Deleting", "Migrating", ""] {
            #expect(!ProvisioningState(waiting).isTerminal, "\(waiting)")
            #expect(!ProvisioningState(waiting).hasFailed, "\(waiting)")
        }
        #expect(ProvisioningState("Migrating") == .other("Migrating"))
        #expect(ProvisioningState("Migrating").rawValue == "Migrating")
    }

    @Test("power states read Azure's PowerState/ codes, and unknown ones are neither running nor deallocated")
    func powerStates() {
        #expect(PowerState("PowerState/deallocated") == .deallocated)
        #expect(PowerState("Deallocating") == .deallocating)
        #expect(PowerState("PowerState/unknown") == .other("PowerState/unknown"))
        #expect(PowerState("PowerState/unknown") != .running && PowerState("PowerState/unknown") != .deallocated)
    }

    @Test("states round-trip through JSON as the service's strings")
    func codable() throws {
        let encoded = try JSONEncoder().encode([ProvisioningState.updating, .other("Weird")])
        #expect(String(decoding: encoded, as: UTF8.self) == #"["Updating","Weird"]"#)
        #expect(try JSONDecoder().decode([ProvisioningState].self, from: encoded) == [.updating, .other("Weird")])
    }

    @Test("a completed operation handle has nothing to poll; an accepted one has its operation")
    func handles() {
        #expect(OperationHandle.completed.id == nil)
        #expect(OperationHandle(id: "op-1", retryAfter: 2).id == "op-1")
    }
}
