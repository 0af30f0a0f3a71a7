//! The storage VMs' SSH: what they answer to a command line ([`shell`]), which the control
//! API's `POST /ssh/{site}` hands them.

pub mod shell;
