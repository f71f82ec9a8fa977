//! The assistants. Today: iConsultant's classifier ([`Consultant`]), which reads every
//! inbound text inquiry and gives it a request type (applied above the type's threshold,
//! else shown to the operator as a hint), and learns from operators' likes and dislikes.

mod consultant;

pub use consultant::{Consultant, RetrainReport};
