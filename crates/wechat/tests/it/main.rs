//! Black-box tests of paygate-wechat, one binary: the shared vectors first, then the client
//! against a local server.

mod sign_vectors;
mod vectors;
mod xml_vectors;
