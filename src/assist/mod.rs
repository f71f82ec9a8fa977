//! The assistants: iConsultant's classifier ([`Consultant`]), which reads every inbound text
//! inquiry and gives it a request type (applied above the type's threshold, else shown to
//! the operator as a hint) and learns from operators' likes and dislikes; and its knowledge
//! base ([`Knowledge`]), which suggests ready answers for the dialogs operators have open.

mod consultant;
pub mod engine;
mod knowledge;

pub use consultant::{Consultant, EngineStatus, RetrainReport};
pub use knowledge::{Knowledge, SUGGEST_DEBOUNCE, USE_BOOST};
