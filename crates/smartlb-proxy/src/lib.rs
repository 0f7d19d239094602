//! smartlb-proxy
