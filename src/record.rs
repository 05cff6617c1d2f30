//! Record: the ledger of delivery attempts and the final state of every job. Not built yet.
