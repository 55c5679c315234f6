import SwiftUI

/// The FourierFT sample: the demo model with its three adapters, chosen per request, streamed
/// output, swap time and cancel. See ios/README.md for the Xcode project setup.
@main
struct FourierFTSampleApp: App {
    var body: some Scene {
        WindowGroup {
            ContentView()
        }
    }
}
