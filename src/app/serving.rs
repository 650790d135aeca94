//! What the front ends call: the application, or, while a database server is
//! still unreachable at start-up, a stand-in that answers every request 503 with
//! Retry-After until `serve` has built the application in the background.
//! Exiting instead would make mod_fcgid answer 500s and respawn us in a loop,
//! and leave nginx with a missing socket, when the machine merely booted the
//! database after us.

use std::sync::OnceLock;

use super::errors::{to_response, AppError};
use super::{finish, App};
use crate::db::DbError;
use crate::http::{Request, Response};
use crate::storage::StorageError;
use crate::timestamp::now_ms;

pub struct Serving {
    app: OnceLock<App>,
}

impl Serving {
    pub fn ready(app: App) -> Serving {
        let serving = Serving::waiting();
        serving.set(app);
        serving
    }

    pub fn waiting() -> Serving {
        Serving {
            app: OnceLock::new(),
        }
    }

    /// Starts answering with `app` (once; a second call changes nothing).
    pub fn set(&self, app: App) {
        let _ = self.app.set(app);
    }

    pub fn handle(&self, req: &Request) -> Response {
        if let Some(app) = self.app.get() {
            return app.handle(req);
        }
        let start = now_ms();
        let unreachable =
            DbError::Unavailable("unreachable since start-up; retrying in the background".into());
        let mut resp = to_response(AppError::from(StorageError::Db(unreachable)));
        finish(req, &mut resp, start);
        log::info!("{} {} {} (starting)", req.method, req.path, resp.status);
        resp
    }
}
