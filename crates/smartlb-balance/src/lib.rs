//! smartlb-balance
