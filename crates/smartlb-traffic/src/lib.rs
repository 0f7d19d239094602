//! smartlb-traffic
