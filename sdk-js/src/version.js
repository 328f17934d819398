// The protocol version sent in the connect URL (`v=`). 4.08 is the comet-server JS API we replace: the server
// answers every client whose major version is >= 4 with the modern frame shapes, which is what this SDK reads.
export const API_VERSION = "4.08";

// This SDK's own version, reported by `CometServer().sdkVersion` and in the dist banner.
export const SDK_VERSION = "1.0.0";
